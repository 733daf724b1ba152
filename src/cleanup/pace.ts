/**
 * How big the next batch is: sized toward a target duration (as GitLab's batched background
 * migrations do), so that each batch holds its locks and its share of the server for about that long
 * whatever the rows cost, and the walk speeds up on cheap rows and slows down on costly ones.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BatchSettings } from './policies.ts';

export interface Pace {
  readonly size: number;
  readonly pauseMs: number;
  readonly lockTimeoutMs: number;
  /** How long a batch may take before it gives up (a wait on locks, one after another, adds up). */
  readonly batchTimeoutMs: number;
  /** A batch of `size` rows took `ms`: the next one is resized toward the target. */
  took(ms: number, rows: number): void;
  /** A batch gave up waiting for a lock: the next is half as big. */
  contended(): void;
}

export function pace(settings: BatchSettings = {}): Pace {
  const targetMs = settings.targetMs ?? 50;
  const minSize = settings.minSize ?? 10;
  const maxSize = settings.maxSize ?? 50_000;
  let size = settings.initialSize ?? Math.min(Math.max(1_000, minSize), maxSize);
  const clamp = (n: number) => Math.min(maxSize, Math.max(minSize, Math.round(n)));
  return {
    get size() {
      return size;
    },
    pauseMs: settings.pauseMs ?? 10,
    lockTimeoutMs: settings.lockTimeoutMs ?? 200,
    batchTimeoutMs: (settings.lockTimeoutMs ?? 200) + 10 * targetMs,
    took(ms, rows) {
      // A short last batch says nothing about the cost of a full one.
      if (rows < size) return;
      // At most doubled or halved at a time: one slow batch (a checkpoint, a cold page) is noise.
      const factor = Math.min(2, Math.max(0.5, targetMs / Math.max(ms, 1)));
      // Within 10% of the target: leave it, so the size does not wander.
      if (factor > 0.9 && factor < 1.1) return;
      size = clamp(size * factor);
    },
    contended() {
      size = clamp(size / 2);
    },
  };
}

/** The pause between batches; cut short (without throwing) when the job is told to stop. */
export async function rest(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return;
  await sleep(ms, undefined, { signal }).catch(() => undefined);
}
