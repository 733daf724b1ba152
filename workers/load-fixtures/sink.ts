/** Where validated rows go. Each sink writes a batch and its checkpoint so that a retry resumes exactly. */
export interface Row {
  line: number;
  value: Record<string, unknown>;
}

export interface Rejection {
  line: number;
  reason: string;
}

export interface Progress {
  /** Number of the last source record this progress covers. */
  records: number;
  loaded: number;
  rejected: number;
  batches: number;
  done: boolean;
}

export const freshProgress: Progress = { records: 0, loaded: 0, rejected: 0, batches: 0, done: false };

/** `next` with `refused` of the rows it counted as loaded moved to rejected (the store refused them). */
export function withRefused(next: Progress, refused: number): Progress {
  return { ...next, loaded: next.loaded - refused, rejected: next.rejected + refused };
}

export interface Sink {
  /** Throws a permanent error if the target does not exist; returns the last committed progress. */
  prepare(): Promise<Progress | undefined>;
  /** Takes one validated row (source record `line`) into the batch being built. */
  add(line: number, value: Record<string, unknown>): void;
  /**
   * Writes the rows added since the last call and records `next` as the checkpoint, atomically where
   * the store allows, idempotently where it does not. The batch is taken at once, so rows added while
   * the write is in flight go to the next batch. Returns rows the store itself refused (a duplicate
   * key, say).
   */
  write(next: Progress): Promise<Rejection[]>;
  /** Marks the load finished, so that a redelivered job does not load again. */
  finish(progress: Progress): Promise<void>;
}
