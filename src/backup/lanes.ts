/** Helpers for working through a backup's tables and collections several at a time. */

/**
 * Runs up to `lanes` lanes over `items`: each lane sets itself up (a connection, a snapshot), then
 * drains items from the shared queue until it is empty. After the first failure no lane takes another
 * item; every lane is waited for (none is left using a shared connection), then the failure is thrown.
 */
export async function runLanes<T>(
  items: readonly T[],
  lanes: number,
  signal: AbortSignal,
  lane: (index: number, drain: (each: (item: T) => Promise<void>) => Promise<void>) => Promise<void>,
): Promise<void> {
  const queue = [...items];
  let failed = false;
  const drain = async (each: (item: T) => Promise<void>) => {
    while (!failed && queue.length > 0) {
      signal.throwIfAborted();
      const item = queue.shift()!;
      try {
        await each(item);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  const n = Math.max(1, Math.min(lanes, items.length));
  const results = await Promise.allSettled(Array.from({ length: n }, (_, i) => lane(i, drain)));
  const rejected = results.find((r) => r.status === 'rejected');
  if (rejected) throw rejected.reason;
}

/** S3 allows 10,000 parts per object; sized for twice the estimate, as compressed output rarely exceeds it. */
export const MAX_PARTS = 10_000;

/** The part size for an object of about `estimateBytes`: the configured one, or larger when needed. */
export function partSizeFor(estimateBytes: number, configuredBytes: number): number {
  const needed = Math.ceil((estimateBytes * 2) / MAX_PARTS);
  const MiB = 1024 * 1024;
  return Math.max(configuredBytes, Math.ceil(needed / MiB) * MiB);
}
