/**
 * The job side of the audit log: an outbox. A job appends its audit event to a Redis stream next to its
 * queue before BullMQ acknowledges it, so no finished job can lack its record, yet no job waits on (or
 * fails because of) the control database. The drainer (audit-drain.ts) copies the stream into
 * PostgreSQL in large batches.
 *
 * "Before" is by order, not by reply: the append goes out on the Redis connection BullMQ also sends
 * the job's acknowledgement on (deps.redis), and Redis runs one connection's commands in the order
 * they were sent. Waiting for the reply instead put a round trip between every job and its
 * acknowledgement, and, since events are batched, lined all of a worker's jobs up behind one barrier
 * (measured: a quarter of the no-op throughput). Should Redis refuse an append that it then follows
 * with the acknowledgement (a clobbered key; out of memory refuses both), the events are kept here
 * and appended again with backoff, and until they are, `record` refuses: later jobs are not
 * acknowledged (`audit_unavailable`) rather than acknowledged without their record.
 *
 * Events recorded in the same tick share one stream entry: at thousands of jobs per second, one Redis
 * write per job costs more than the rest of the job. Entries hold the events already encoded as lines
 * of COPY text for dbfleet.job_events, so the drainer only concatenates them.
 */
import type { Redis } from 'ioredis';
import { copyValue } from '../stores/copy-text.ts';
import type { JobStatus } from './control-db.ts';

export interface AuditEvent {
  prefix: string;
  queue: string;
  jobId: string;
  /** The run this attempt belongs to; unknown only for a job refused before its envelope was read. */
  runId: string | undefined;
  tenant: string;
  requestedBy: string | undefined;
  payloadDigest: string;
  status: JobStatus;
  /** When this event happened (epoch ms). */
  at: number;
  attempt: number;
  enqueuedAt: number;
  startedAt: number;
  durationMs?: number | undefined;
  resultSummary?: unknown;
  errorCode?: string | undefined;
  errorMessage?: string | undefined;
}

/** The stream holding one prefix's audit events until the drainer has copied them. */
export const auditStreamKey = (prefix: string) => `${prefix}:dbfleet:audit`;

/**
 * Field name of the single field each stream entry carries (COPY text lines, one per event). Named
 * for the line format, after the control migration that introduced it: entries of an earlier format
 * carry another field (see audit-legacy.ts), and the drainer copies each by its own columns.
 */
export const EVENT_FIELD = 'e7';

/** The columns of migration 4's lines (field 'e4'): the current ones but the run id. */
export const AUDIT_COLUMNS_E4 = [
  'prefix',
  'queue',
  'job_id',
  'tenant',
  'requested_by',
  'payload_digest',
  'status',
  'attempt',
  'enqueued_ms',
  'started_ms',
  'duration_ms',
  'result_summary',
  'error_code',
  'error_message',
  'recorded_ms',
] as const;

/** dbfleet.job_event_log columns, in the order of each line's values. */
export const AUDIT_COLUMNS = [...AUDIT_COLUMNS_E4, 'run_id'] as const;

/** One event as a line of COPY text, in AUDIT_COLUMNS order. */
export function auditLine(e: AuditEvent): string {
  // Written out rather than copyLine over a row object: it runs for every job, and the row object
  // was a tenth of a no-op job's cost. test/unit/audit-line.test.ts holds it equal to copyLine over
  // AUDIT_COLUMNS, so the column order cannot drift.
  return (
    copyValue(e.prefix) +
    '\t' +
    copyValue(e.queue) +
    '\t' +
    copyValue(e.jobId) +
    '\t' +
    copyValue(e.tenant) +
    '\t' +
    auditText(e.requestedBy) +
    '\t' +
    copyValue(e.payloadDigest) +
    '\t' +
    e.status +
    '\t' +
    e.attempt +
    '\t' +
    wholeNumber(e.enqueuedAt) +
    '\t' +
    wholeNumber(e.startedAt) +
    '\t' +
    wholeNumber(e.durationMs === undefined ? undefined : Math.min(e.durationMs, MAX_DURATION_MS)) +
    '\t' +
    copyValue(e.resultSummary) +
    '\t' +
    auditText(e.errorCode) +
    '\t' +
    auditText(e.errorMessage) +
    '\t' +
    wholeNumber(e.at) +
    '\t' +
    copyValue(e.runId) +
    '\n'
  );
}

/**
 * Free text (who asked, error code and message) with any NUL character replaced: PostgreSQL text
 * cannot hold one, and a line it refuses would stop the drainer at that batch.
 */
function auditText(text: string | undefined): string {
  return copyValue(text?.includes('\0') ? text.replaceAll('\0', '\uFFFD') : text);
}

/** duration_ms is an integer column: a job running longer than 24.8 days is recorded as this. */
const MAX_DURATION_MS = 2 ** 31 - 1;

/**
 * A time (epoch ms) or duration for a bigint/integer column. Rounded, and null unless finite: a line
 * PostgreSQL refuses would stop the drainer at that batch.
 */
export function wholeNumber(n: number | undefined): string | number {
  return n !== undefined && Number.isFinite(n) ? Math.round(n) : '\\N';
}

const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 5_000;

export class AuditOutbox {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #onError: (err: unknown, events: number) => void;
  /** Lines recorded this tick, appended as one entry when the tick ends. */
  #batch = '';
  #batchSent: Promise<void> | undefined;
  /** Lines Redis refused, appended again with backoff; `record` refuses while there are any. */
  #refused: string[] = [];
  #refusedError: unknown;
  #retryMs = RETRY_MIN_MS;
  #retryTimer: NodeJS.Timeout | undefined;
  #retrying = false;
  /** Settles when every append sent so far has been answered. */
  #lastReply: Promise<unknown> = Promise.resolve();

  constructor(redis: Redis, prefix: string, onError: (err: unknown, events: number) => void = () => {}) {
    this.#redis = redis;
    this.#key = auditStreamKey(prefix);
    this.#onError = onError;
  }

  /**
   * Resolves once the event's append has been sent on the shared connection, so whatever this caller
   * sends on it next (the job's acknowledgement) runs after the append. Rejects while earlier events
   * are still refused by Redis.
   */
  record(event: AuditEvent): Promise<void> {
    if (this.#refused.length > 0)
      return Promise.reject(new Error(`audit outbox refused by Redis: ${String(this.#refusedError)}`));
    this.#batch += auditLine(event);
    this.#batchSent ??= new Promise<void>((resolve) =>
      process.nextTick(() => {
        const lines = this.#batch;
        this.#batch = '';
        this.#batchSent = undefined;
        this.#append(lines);
        resolve();
      }),
    );
    return this.#batchSent;
  }

  /** Resolves once every event recorded so far is in Redis (or refused and kept for retry). */
  async flushed(): Promise<void> {
    await this.#batchSent;
    await this.#lastReply;
  }

  /** Events Redis refused that are still waiting to be appended. */
  get refusedEvents(): number {
    return this.#refused.reduce((n, lines) => n + countLines(lines), 0);
  }

  /** Tries once more to append refused events; resolves whether or not Redis takes them. */
  async close(): Promise<void> {
    await this.flushed();
    if (this.#refused.length > 0) await this.#retry();
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  #append(lines: string): void {
    this.#lastReply = this.#redis.xadd(this.#key, '*', EVENT_FIELD, lines).catch((err: unknown) => {
      this.#refused.push(lines);
      this.#refusedError = err;
      this.#onError(err, countLines(lines));
      this.#scheduleRetry();
    });
  }

  #scheduleRetry(): void {
    if (this.#retryTimer || this.#retrying) return;
    this.#retryTimer = setTimeout(() => void this.#retry(), this.#retryMs).unref();
  }

  async #retry(): Promise<void> {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    if (this.#retrying) return;
    this.#retrying = true;
    // Appends refused meanwhile are pushed behind these and wait for the next retry.
    const taken = this.#refused.length;
    try {
      await this.#redis.xadd(this.#key, '*', EVENT_FIELD, this.#refused.slice(0, taken).join(''));
      this.#refused.splice(0, taken);
      this.#retryMs = RETRY_MIN_MS;
    } catch (err) {
      this.#refusedError = err;
      this.#retryMs = Math.min(this.#retryMs * 2, RETRY_MAX_MS);
    } finally {
      this.#retrying = false;
    }
    if (this.#refused.length > 0) this.#scheduleRetry();
  }
}

function countLines(lines: string): number {
  let n = 0;
  for (let i = lines.indexOf('\n'); i !== -1; i = lines.indexOf('\n', i + 1)) n++;
  return n;
}
