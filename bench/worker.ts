/** A fleet worker in a process of its own, as deployed: its peak RSS and CPU are its own. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

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
