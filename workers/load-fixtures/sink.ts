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
  /**
   * The rows the store refused in the batch this progress ends with. They are recorded in the
   * control database after the batch commits; kept here too, so that a run resumed after a crash in
   * between records them again rather than counting rejections nobody can list.
   */
  refused?: Rejection[];
}

export const freshProgress: Progress = { records: 0, loaded: 0, rejected: 0, batches: 0, done: false };

/** `next` with the rows it counted as loaded that the store refused moved to rejected. */
export function withRefused(next: Progress, refused: Rejection[]): Progress {
  return {
    ...next,
    loaded: next.loaded - refused.length,
    rejected: next.rejected + refused.length,
    ...(refused.length > 0 ? { refused } : {}),
  };
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

/** The batch with one row per key value, the last one (it wins, as a later write would). */
export function lastByKey(rows: Row[], key: readonly string[], encode: (values: unknown[]) => string): Row[] {
  const byKey = new Map<string, Row>();
  for (const row of rows) byKey.set(encode(key.map((k) => row.value[k])), row);
  return [...byKey.values()];
}
