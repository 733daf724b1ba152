/**
 * The audit log's writer, with group commit: events from all jobs in flight are merged into one
 * multi-row upsert per round trip, so auditing costs about one statement per batch of jobs rather than
 * two per job. A flush starts as soon as the previous one ends; events that arrive meanwhile wait for
 * the next. Callers that must not go on before their row is durable await `record()`.
 */
import type pg from 'pg';
import type { JobStatus } from './control-db.ts';

export interface AuditEvent {
  prefix: string;
  queue: string;
  jobId: string;
  tenant: string;
  requestedBy: string | undefined;
  payloadDigest: string;
  status: JobStatus;
  attempt: number;
  enqueuedAt: Date;
  startedAt: Date;
  finishedAt?: Date | undefined;
  durationMs?: number | undefined;
  resultSummary?: unknown;
  errorCode?: string | undefined;
  errorMessage?: string | undefined;
}

interface Pending {
  event: AuditEvent;
  done: { resolve: () => void; reject: (err: unknown) => void };
}

const UPSERT = `
  INSERT INTO dbfleet.job_runs (prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempts,
                                enqueued_at, started_at, finished_at, duration_ms, result_summary, error_code,
                                error_message, updated_at)
  SELECT *, now() FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                              $8::int[], $9::timestamptz[], $10::timestamptz[], $11::timestamptz[], $12::int[],
                              $13::jsonb[], $14::text[], $15::text[])
  ON CONFLICT (prefix, queue, job_id) DO UPDATE SET
    status = EXCLUDED.status,
    attempts = GREATEST(dbfleet.job_runs.attempts, EXCLUDED.attempts),
    started_at = COALESCE(dbfleet.job_runs.started_at, EXCLUDED.started_at),
    finished_at = EXCLUDED.finished_at,
    duration_ms = EXCLUDED.duration_ms,
    result_summary = EXCLUDED.result_summary,
    error_code = EXCLUDED.error_code,
    error_message = EXCLUDED.error_message,
    updated_at = now()`;

export class AuditLog {
  readonly #pool: pg.Pool;
  #pending: Pending[] = [];
  #draining = false;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /** Queues the event; the promise settles when the flush holding it has committed (or failed). */
  record(event: AuditEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ event, done: { resolve, reject } });
      if (!this.#draining) {
        this.#draining = true;
        void this.#drain();
      }
    });
  }

  async #drain(): Promise<void> {
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      try {
        await this.#write(batch.map((p) => p.event));
        for (const p of batch) p.done.resolve();
      } catch (err) {
        for (const p of batch) p.done.reject(err);
      }
    }
    this.#draining = false;
  }

  async #write(events: AuditEvent[]): Promise<void> {
    // One row per job: a later event for the same job (its end after its start) wins.
    const rows = new Map<string, AuditEvent>();
    for (const e of events) rows.set(`${e.prefix}\u0000${e.queue}\u0000${e.jobId}`, e);
    const list = [...rows.values()];
    const column = <T>(pick: (e: AuditEvent) => T) => list.map(pick);
    await this.#pool.query(UPSERT, [
      column((e) => e.prefix),
      column((e) => e.queue),
      column((e) => e.jobId),
      column((e) => e.tenant),
      column((e) => e.requestedBy ?? null),
      column((e) => e.payloadDigest),
      column((e) => e.status),
      column((e) => e.attempt),
      column((e) => e.enqueuedAt),
      column((e) => e.startedAt),
      column((e) => e.finishedAt ?? null),
      column((e) => (e.durationMs === undefined ? null : Math.round(e.durationMs))),
      column((e) => (e.resultSummary === undefined ? null : JSON.stringify(e.resultSummary))),
      column((e) => e.errorCode ?? null),
      column((e) => e.errorMessage ?? null),
    ]);
  }
}
