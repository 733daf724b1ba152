/** A fleet worker in a process of its own, as deployed: its peak RSS and CPU are its own. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { JobName, PayloadInput, Result } from '../queues/index.ts';
import { createClient } from '../src/client/client.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { cpuSeconds, peakRssMiB, rssMiB } from './proc.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

export interface BenchWorker {
  proc: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `bin/dbfleet worker` with `env` beside the bench's own (DBFLEET_FILE_ROOTS for a load, say)
 * and resolves once it is ready (its start-up, a second or so of module loading, is not throughput).
 */
export async function startBenchWorker(
  prefix: string,
  env: NodeJS.ProcessEnv = {},
  concurrency = 1,
): Promise<BenchWorker> {
  const proc = spawn(path.join(ROOT, 'bin/dbfleet'), ['worker', '--concurrency', String(concurrency)], {
    env: {
      ...process.env,
      ...env,
      DBFLEET_PREFIX: prefix,
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

export interface TimedJob<N extends JobName> {
  result: Result<N>;
  seconds: number;
  workerPeakRssMiB: number;
  /** The worker's CPU, start-up included (about a second of module loading). */
  workerCpuSeconds: number;
  /** Each progress report the job made, with the seconds since the clock started. */
  progress: { seconds: number; data: unknown }[];
  /** The worker's RSS every RSS_SAMPLE_MS while the job ran. */
  workerRssMiB: number[];
}

const RSS_SAMPLE_MS = 250;

export interface TimedJobOptions {
  /** Beside the bench's environment, for the worker. */
  env?: NodeJS.ProcessEnv;
  /** Runs just before the clock starts (a checkpoint, say). */
  settle?: () => void;
}

/**
 * Runs one job on a worker process of its own, timed from when the worker is ready to when the
 * job's result arrives.
 */
export async function timedJob<N extends JobName>(
  deps: FleetDeps,
  type: N,
  payload: PayloadInput<N>,
  options: TimedJobOptions = {},
): Promise<TimedJob<N>> {
  const worker = await startBenchWorker(deps.prefix, options.env);
  const pid = worker.proc.pid!;
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  const rss: number[] = [];
  let sampler: NodeJS.Timeout | undefined;
  try {
    options.settle?.();
    const started = performance.now();
    const job = await client.enqueue(type, payload);
    const progress: TimedJob<N>['progress'] = [];
    await job.onProgress((data) => progress.push({ seconds: (performance.now() - started) / 1000, data }));
    sampler = setInterval(() => rss.push(rssMiB(pid)), RSS_SAMPLE_MS);
    const result = await job.waitForResult({ timeoutMs: 6 * 3600_000 });
    const seconds = (performance.now() - started) / 1000;
    return {
      result,
      seconds,
      workerPeakRssMiB: peakRssMiB(pid),
      workerCpuSeconds: cpuSeconds(pid),
      progress,
      workerRssMiB: rss,
    };
  } finally {
    clearInterval(sampler);
    await worker.stop();
    await client.close();
  }
}
