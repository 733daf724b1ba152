/**
 * Copies the audit outbox (a Redis stream, see audit-outbox.ts) into dbfleet.job_event_log. Every worker
 * process runs one; a transaction-scoped advisory lock lets one at a time copy a batch. The batch's
 * rows and the stream position they reach commit in one transaction, so a drainer killed at any point
 * neither loses nor repeats an event; entries are trimmed from the stream only after that commit.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.ts';
import { copyInto, inTransaction, withPoolClient } from '../stores/postgres.ts';
import { copyLegacyEvents, LEGACY_EVENT_FIELD } from './audit-legacy.ts';
import { AUDIT_COLUMNS, auditStreamKey, EVENT_FIELD } from './audit-outbox.ts';

/** Stream entries per transaction; each holds the events of one event-loop turn of one process. */
const BATCH_ENTRIES = 200;
/** How often an idle drainer looks for new events. */
const IDLE_MS = 100;

export class AuditDrain {
  readonly #redis: Redis;
  readonly #pool: pg.Pool;
  readonly #prefix: string;
  readonly #key: string;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(redis: Redis, pool: pg.Pool, prefix: string, log: Logger) {
    this.#redis = redis;
    this.#pool = pool;
    this.#prefix = prefix;
    this.#key = auditStreamKey(prefix);
    this.#log = log;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /** Stops the loop, then copies whatever is left (unless another process holds the lock). */
  async close(): Promise<void> {
    this.#stop.abort();
    await this.#loop;
    await this.drainAll().catch((err: unknown) => this.#log.warn({ err }, 'final audit drain failed'));
  }

  /** Copies until the stream is empty or another drainer holds the lock. */
  async drainAll(): Promise<void> {
    while ((await this.drainOnce()) === 'full');
  }

  async #run(): Promise<void> {
    let failures = 0;
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      try {
        const outcome = await this.drainOnce();
        failures = 0;
        if (outcome !== 'full') await sleep(IDLE_MS, undefined, { signal });
      } catch (err) {
        if (signal.aborted) break;
        // The events wait safely in Redis; back off while the control database is unreachable.
        failures++;
        this.#log.warn({ err, failures }, 'audit drain failed; retrying');
        await sleep(Math.min(30_000, 200 * 2 ** failures), undefined, { signal }).catch(() => undefined);
      }
    }
  }

  /** One batch: 'full' when more may be waiting, 'partial' or 'empty' when caught up, 'busy' when locked. */
  async drainOnce(): Promise<'full' | 'partial' | 'empty' | 'busy'> {
    // The stream is trimmed after each batch, so its length is what is left to copy: an idle poll is
    // one cheap Redis call, not a database transaction.
    if ((await this.#redis.xlen(this.#key)) === 0) return 'empty';
    const batch = await withPoolClient(this.#pool, (client) =>
      inTransaction(client, () => this.#copyBatch(client)),
    );
    // Only after COMMIT: a failed commit leaves the entries in the stream for the next try.
    if (batch.committedThrough) await this.#trim(batch.committedThrough);
    return batch.outcome;
  }

  async #copyBatch(client: pg.PoolClient): Promise<{
    outcome: 'full' | 'partial' | 'empty' | 'busy';
    committedThrough?: string | undefined;
  }> {
    const { rows: lock } = await client.query<{ ok: boolean }>(
      "SELECT pg_try_advisory_xact_lock(hashtext('dbfleet.audit'), hashtext($1)) AS ok",
      [this.#prefix],
    );
    if (!lock[0]!.ok) return { outcome: 'busy' };
    const { rows } = await client.query<{ last_id: string }>(
      'SELECT last_id FROM dbfleet.audit_cursor WHERE prefix = $1',
      [this.#prefix],
    );
    const after = rows[0]?.last_id;
    // As bytes: the entries are COPY text already, so they go to PostgreSQL without a decode and
    // re-encode (megabytes per second at thousands of jobs per second).
    const entries = await this.#redis.xrangeBuffer(
      this.#key,
      after ? `(${after}` : '-',
      '+',
      'COUNT',
      BATCH_ENTRIES,
    );
    // Nothing new: entries left behind by a drainer that died between its commit and its trim.
    if (entries.length === 0) return { outcome: 'empty', committedThrough: after };
    for (const run of runsByFormat(entries)) {
      const text = Buffer.concat(run.texts);
      if (run.legacy) await copyLegacyEvents(client, text);
      else await copyInto(client, 'dbfleet.job_event_log', AUDIT_COLUMNS, text);
    }
    const last = entries.at(-1)![0].toString();
    await client.query(
      `INSERT INTO dbfleet.audit_cursor (prefix, last_id) VALUES ($1, $2)
       ON CONFLICT (prefix) DO UPDATE SET last_id = EXCLUDED.last_id`,
      [this.#prefix, last],
    );
    return { outcome: entries.length === BATCH_ENTRIES ? 'full' : 'partial', committedThrough: last };
  }

  /** Removes entries up to and including `id`: they are committed in PostgreSQL. */
  async #trim(id: string): Promise<void> {
    const [ms, seq] = id.split('-');
    await this.#redis.xtrim(this.#key, 'MINID', `${ms}-${BigInt(seq!) + 1n}`);
  }
}

/**
 * The entries' COPY text in runs of one line format, in stream order: all current but during a
 * rolling upgrade, when workers of the version before append too.
 */
function runsByFormat(entries: [Buffer, Buffer[]][]): { legacy: boolean; texts: Buffer[] }[] {
  const runs: { legacy: boolean; texts: Buffer[] }[] = [];
  for (const [, fields] of entries) {
    const { legacy, text } = eventsOf(fields);
    const last = runs.at(-1);
    if (last?.legacy === legacy) last.texts.push(text);
    else runs.push({ legacy, texts: [text] });
  }
  return runs;
}

/** The COPY text an entry carries, and whether it is in the earlier line format. */
function eventsOf(fields: Buffer[]): { legacy: boolean; text: Buffer } {
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i]!.toString();
    if (name === EVENT_FIELD) return { legacy: false, text: fields[i + 1]! };
    if (name === LEGACY_EVENT_FIELD) return { legacy: true, text: fields[i + 1]! };
  }
  throw new Error('audit stream entry without its events field');
}
