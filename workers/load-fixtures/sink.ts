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

export interface Sink {
  /** Throws a permanent error if the target does not exist; returns the last committed progress. */
  prepare(): Promise<Progress | undefined>;
  /**
   * Writes `rows` and records `next` as the checkpoint, atomically where the store allows, idempotently
   * where it does not. Returns rows the store itself refused (a duplicate key, say).
   */
  write(rows: Row[], next: Progress): Promise<Rejection[]>;
  /** Marks the load finished, so that a redelivered job does not load again. */
  finish(progress: Progress): Promise<void>;
}
