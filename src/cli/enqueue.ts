/** Enqueueing a job from a command, and waiting for it with progress on stderr. */
import type { JobName, PayloadInput, Result } from '../../queues/index.ts';
import { withClient } from './bootstrap.ts';

export const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));

/** Enqueues; with `wait`, prints `{type, id, result}` when done and returns the result. */
export async function enqueueAndMaybeWait<N extends JobName>(
  type: N,
  payload: PayloadInput<N>,
  o: { wait?: boolean; timeout: number; quiet?: boolean },
): Promise<Result<N> | undefined> {
  return withClient(async (client) => {
    const job = await client.enqueue(type, payload, { requestedBy: process.env.USER ?? 'cli' });
    if (!o.wait) {
      print({ type, id: job.id });
      return undefined;
    }
    console.error(`${type} job ${job.id} enqueued; waiting for it`);
    const stop = await job.onProgress((p) => console.error(JSON.stringify({ progress: p })));
    try {
      const result = await job.waitForResult({ timeoutMs: o.timeout });
      print({ type, id: job.id, result });
      return result;
    } finally {
      stop();
    }
  });
}
