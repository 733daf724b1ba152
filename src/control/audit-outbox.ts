/**
 * The job side of the audit log: an outbox. A job appends its audit event to a Redis stream next to its
 * queue and awaits that append before BullMQ acknowledges the job, so no finished job can lack its
 * record, yet no job waits on (or fails because of) the control database. The drainer
 * (audit-drain.ts) copies the stream into PostgreSQL in large batches.
 *
 * Events recorded in the same turn of the event loop share one stream entry: at thousands of jobs per
 * second, one Redis write per job costs more than the rest of the job. Entries hold the events already
 * encoded as lines of COPY text for dbfleet.job_events, so the drainer only concatenates them.
 */
import type { Redis } from 'ioredis';
import { copyLine } from '../stores/copy-text.ts';
import type { JobStatus } from './control-db.ts';

export interface AuditEvent {
  prefix: string;
  queue: string;
  jobId: string;
  tenant: string;
  requestedBy: string | undefined;
  payloadDigest: string;
  status: JobStatus;
  /** When this event happened (epoch ms). */
  at: number;
  attempt: number;
  enqueuedAt: number;
  startedAt: number;
  finishedAt?: number | undefined;
  durationMs?: number | undefined;
  resultSummary?: unknown;
  errorCode?: string | undefined;
  errorMessage?: string | undefined;
}

/** The stream holding one prefix's audit events until the drainer has copied them. */
export const auditStreamKey = (prefix: string) => `${prefix}:dbfleet:audit`;

/** Field name of the single field each stream entry carries (COPY text lines, one per event). */
export const EVENT_FIELD = 'e';

/** dbfleet.job_events columns, in the order of each line's values. */
export const AUDIT_COLUMNS = [
  'prefix',
  'queue',
  'job_id',
  'tenant',
  'requested_by',
  'payload_digest',
  'status',
  'attempt',
  'enqueued_at',
  'started_at',
  'finished_at',
  'duration_ms',
  'result_summary',
  'error_code',
  'error_message',
  'recorded_at',
] as const;

const time = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms));

/** One event as a line of COPY text, in AUDIT_COLUMNS order. */
export function auditLine(e: AuditEvent): string {
  const row: Record<(typeof AUDIT_COLUMNS)[number], unknown> = {
    prefix: e.prefix,
    queue: e.queue,
    job_id: e.jobId,
    tenant: e.tenant,
    requested_by: e.requestedBy,
    payload_digest: e.payloadDigest,
    status: e.status,
    attempt: e.attempt,
    enqueued_at: time(e.enqueuedAt),
    started_at: time(e.startedAt),
    finished_at: time(e.finishedAt),
    duration_ms: e.durationMs === undefined ? undefined : Math.round(e.durationMs),
    result_summary: e.resultSummary,
    error_code: e.errorCode,
    error_message: e.errorMessage,
    recorded_at: time(e.at),
  };
  return copyLine(row, AUDIT_COLUMNS);
}

interface Pending {
  lines: string;
  written: Promise<void>;
}

export class AuditOutbox {
  readonly #redis: Redis;
  readonly #key: string;
  #pending: Pending | undefined;

  constructor(redis: Redis, prefix: string) {
    this.#redis = redis;
    this.#key = auditStreamKey(prefix);
  }

  /** Resolves once the event is in Redis (as durable as the job it describes). */
  record(event: AuditEvent): Promise<void> {
    const line = auditLine(event);
    if (this.#pending) {
      this.#pending.lines += line;
      return this.#pending.written;
    }
    const pending: Pending = {
      lines: line,
      written: new Promise<void>((resolve, reject) =>
        setImmediate(() => {
          this.#pending = undefined;
          this.#redis.xadd(this.#key, '*', EVENT_FIELD, pending.lines).then(() => resolve(), reject);
        }),
      ),
    };
    this.#pending = pending;
    return pending.written;
  }
}
