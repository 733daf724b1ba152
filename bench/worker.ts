/** A fleet worker in a process of its own, as deployed: its peak RSS and CPU are its own. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { PayloadInput, Result } from '../queues/index.ts';
import { createClient } from '../src/client/client.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { cpuSeconds, peakRssMiB } from './proc.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

export interface BenchWorker {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `bin/dbfleet worker` reading tenants' files under `fileRoots` and resolves once it is ready
 * (its start-up, a second or so of module loading, is not load throughput).
 */
export async function startBenchWorker(prefix: string, fileRoots: string): Promise<BenchWorker> {
  const proc = spawn(path.join(ROOT, 'bin/dbfleet'), ['worker', '--concurrency', '1'], {
    env: {
      ...process.env,
      DBFLEET_PREFIX: prefix,
      DBFLEET_FILE_ROOTS: fileRoots,
      DBFLEET_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"worker started"')) resolve();
    });
    proc.once('exit', () => reject(new Error(`worker exited before it started:\n${output}`)));
  });
  return {
    proc,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    },
  };
}

export interface TimedLoad {
  result: Result<'load-fixtures'>;
  seconds: number;
  workerPeakRssMiB: number;
  /** The worker's CPU, start-up included (about a second of module loading). */
  workerCpuSeconds: number;
}

/**
 * Runs one load-fixtures job on a worker process of its own, timed from when the worker is ready to
 * when the job's result arrives; `settle` runs just before the clock starts.
 */
export async function timedLoad(
  deps: FleetDeps,
  fileRoots: string,
  payload: PayloadInput<'load-fixtures'>,
  settle: () => void,
): Promise<TimedLoad> {
  const worker = await startBenchWorker(deps.prefix, fileRoots);
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  try {
    settle();
    const started = performance.now();
    const job = await client.enqueue('load-fixtures', payload);
    const result = await job.waitForResult({ timeoutMs: 1_800_000 });
    const seconds = (performance.now() - started) / 1000;
    return {
      result,
      seconds,
      workerPeakRssMiB: peakRssMiB(worker.proc.pid!),
      workerCpuSeconds: cpuSeconds(worker.proc.pid!),
    };
  } finally {
    await worker.stop();
    await client.close();
  }
}
