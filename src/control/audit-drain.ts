/**
 * Copies the audit outbox (a Redis stream, see audit-outbox.ts) into dbfleet.job_event_log. Every worker
 * process runs one; a transaction-scoped advisory lock lets one at a time copy a batch. The batch's
 * rows and the stream position they reach commit in one transaction, so a drainer killed at any point
 * neither loses nor repeats an event; entries are trimmed from the stream only after that commit.
 *
 * An entry the drainer cannot copy (no events field, COPY text PostgreSQL refuses for its data, or
 * that ends PostgreSQL's reading early) would fail its batch on every try and hold every later event
 * behind it, or, for the last kind, lose the events after it in the same COPY. It is moved instead to
 * dbfleet.audit_dead_letters, byte for byte, in the same transaction as the other entries' rows and
 * the cursor past it. While there are none this costs only a count of the lines sent (20 to 50 ns
 * an event, to compare with the rows PostgreSQL reports): a batch whose COPY is refused for its data
 * is rolled back and copied again under savepoints, halving each refused range until every refused
 * entry stands alone. Any other error (connection, server, lock) moves nothing: the batch waits in
 * Redis and is tried again.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.ts';
import { isPgDataRefusal } from '../errors.ts';
import { copyInto, inTransaction, withPoolClient } from '../stores/postgres.ts';
import { copyLegacyEvents, LEGACY_EVENT_FIELD } from './audit-legacy.ts';
import { AUDIT_COLUMNS, AUDIT_COLUMNS_E4, auditStreamKey, EVENT_FIELD } from './audit-outbox.ts';

/** Stream entries per transaction; each holds the events of one event-loop turn of one process. */
const BATCH_ENTRIES = 200;
/** How often an idle drainer looks for new events. */
const IDLE_MS = 100;
/** The dead-letter code of an entry without an events field (others carry the SQLSTATE). */
const NO_EVENTS = 'no_events_field';

/**
 * Entries whose COPY PostgreSQL ended before their last line, with no error: an unescaped `\.`
 * followed by a newline is its end-of-data marker, and it ignores whatever follows, the next
 * entries' events included. Our lines escape every backslash, so only a malformed entry holds one.
 */
class CopyEndedEarly extends Error {
  readonly code = 'copy_ended_early';
  constructor() {
    super('PostgreSQL copied fewer rows than the audit entries hold lines (an end-of-data marker)');
  }
}

/**
 * The line formats the drainer reads, by stream field: the current one and those workers of earlier
 * versions still append during a rolling upgrade.
 */
const FORMATS = {
  [EVENT_FIELD]: (client: pg.PoolClient, text: Buffer) =>
    copyInto(client, 'dbfleet.job_event_log', AUDIT_COLUMNS, text),
  e4: (client: pg.PoolClient, text: Buffer) =>
    copyInto(client, 'dbfleet.job_event_log', AUDIT_COLUMNS_E4, text),
  [LEGACY_EVENT_FIELD]: copyLegacyEvents,
} as const;
type Format = keyof typeof FORMATS;

/** A stream entry's events: COPY text lines in one of the formats. */
interface Entry {
  id: string;
  format: Format;
  text: Buffer;
}

/** An entry set aside: all its fields (names and values alternating) and why. */
interface DeadLetter {
  id: string;
  fields: Buffer[];
  code: string;
}

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
    const batch = await withPoolClient(this.#pool, async (client) => {
      try {
        return await inTransaction(client, () => this.#copyBatch(client, false));
      } catch (err) {
        if (refusedDataCode(err) === undefined) throw err;
      }
      // PostgreSQL refused an entry's COPY text for its data, and the batch was rolled back. Again,
      // setting refused entries aside; the batch is read anew (another drainer may have moved on).
      return inTransaction(client, () => this.#copyBatch(client, true));
    });
    // The entry id and the code only: the entry, and the server's message about it, may hold
    // personal data. After COMMIT, so each is said once.
    for (const d of batch.dead ?? [])
      this.#log.warn(
        { entryId: d.id, code: d.code },
        'audit stream entry moved to dbfleet.audit_dead_letters',
      );
    // Only after COMMIT: a failed commit leaves the entries in the stream for the next try.
    if (batch.committedThrough) await this.#trim(batch.committedThrough);
    return batch.outcome;
  }

  /**
   * Copies the entries after the cursor and moves the cursor past them, in the caller's transaction.
   * Entries without events go to the dead letters. `careful`: each COPY under a savepoint, and the
   * entries PostgreSQL refuses for their data go to the dead letters too (otherwise such a refusal
   * fails the batch).
   */
  async #copyBatch(
    client: pg.PoolClient,
    careful: boolean,
  ): Promise<{
    outcome: 'full' | 'partial' | 'empty' | 'busy';
    committedThrough?: string | undefined;
    dead?: DeadLetter[];
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
    const read = await this.#redis.xrangeBuffer(
      this.#key,
      after ? `(${after}` : '-',
      '+',
      'COUNT',
      BATCH_ENTRIES,
    );
    // An entry in a line format newer than this drainer knows (a worker of the next version, during
    // a rolling upgrade) is not malformed: the batch stops before it, and it waits for a drainer
    // that can read it.
    const newer = read.findIndex(([, fields]) => newerFormat(fields));
    const entries = newer === -1 ? read : read.slice(0, newer);
    if (newer !== -1) this.#warnNewerFormat(read[newer]![0].toString());
    // Nothing new: entries left behind by a drainer that died between its commit and its trim.
    if (entries.length === 0) return { outcome: newer === -1 ? 'empty' : 'busy', committedThrough: after };
    const readable: Entry[] = [];
    // Entry id -> why it is set aside.
    const refused = new Map<string, string>();
    for (const [rawId, fields] of entries) {
      const id = rawId.toString();
      const events = eventsOf(fields);
      if (events) readable.push({ id, ...events });
      else refused.set(id, NO_EVENTS);
    }
    if (careful) await copyOrSplit(client, readable, refused);
    else await copyEntries(client, readable);
    const dead: DeadLetter[] = [];
    if (refused.size > 0)
      for (const [rawId, fields] of entries) {
        const code = refused.get(rawId.toString());
        if (code) dead.push({ id: rawId.toString(), fields, code });
      }
    await this.#bury(client, dead);
    const last = entries.at(-1)![0].toString();
    await client.query(
      `INSERT INTO dbfleet.audit_cursor (prefix, last_id) VALUES ($1, $2)
       ON CONFLICT (prefix) DO UPDATE SET last_id = EXCLUDED.last_id`,
      [this.#prefix, last],
    );
    return {
      outcome: newer !== -1 ? 'busy' : entries.length === BATCH_ENTRIES ? 'full' : 'partial',
      committedThrough: last,
      dead,
    };
  }

  #newerWarnedAt = 0;

  /** Says, once a minute at most, that events wait for an upgraded drainer. */
  #warnNewerFormat(entryId: string): void {
    if (Date.now() - this.#newerWarnedAt < 60_000) return;
    this.#newerWarnedAt = Date.now();
    this.#log.warn(
      { entryId },
      'audit events in a newer line format wait for a drainer of that version (upgrade this worker)',
    );
  }

  /** Records entries set aside in the dead-letter table, in the batch's transaction. */
  async #bury(client: pg.PoolClient, dead: DeadLetter[]): Promise<void> {
    // One statement each: rare, and entries differ in their number of fields (no 2-D array).
    for (const d of dead)
      await client.query(
        // Already there only if the cursor was lost and the entry read again: the same entry.
        `INSERT INTO dbfleet.audit_dead_letters (prefix, entry_id, fields, error_code)
         VALUES ($1, $2, $3, $4) ON CONFLICT (prefix, entry_id) DO NOTHING`,
        [this.#prefix, d.id, d.fields, d.code],
      );
  }

  /** Removes entries up to and including `id`: they are committed in PostgreSQL. */
  async #trim(id: string): Promise<void> {
    const [ms, seq] = id.split('-');
    await this.#redis.xtrim(this.#key, 'MINID', `${ms}-${BigInt(seq!) + 1n}`);
  }
}

/**
 * Copies entries' events, in stream order, one COPY per run of entries in one line format: all
 * current but during a rolling upgrade, when workers of the version before append too. Throws
 * CopyEndedEarly unless PostgreSQL copied a row for every line.
 */
async function copyEntries(client: pg.PoolClient, entries: readonly Entry[]): Promise<void> {
  for (let start = 0; start < entries.length;) {
    const format = entries[start]!.format;
    let end = start + 1;
    while (end < entries.length && entries[end]!.format === format) end++;
    const run = entries.slice(start, end);
    const rows = await FORMATS[format](client, Buffer.concat(run.map((e) => e.text)));
    if (rows !== run.reduce((n, e) => n + lineCount(e.text), 0)) throw new CopyEndedEarly();
    start = end;
  }
}

/** Lines of COPY text, the last one with or without its newline (as PostgreSQL reads them). */
function lineCount(text: Buffer): number {
  let n = 0;
  for (let i = text.indexOf(10); i !== -1; i = text.indexOf(10, i + 1)) n++;
  return text.length > 0 && text[text.length - 1] !== 10 ? n + 1 : n;
}

/**
 * Copies entries under a savepoint; if PostgreSQL refuses their data, rolls back to it and copies
 * each half the same way, in order, down to single entries, whose refusal codes go into `refused`.
 * k refused entries among n cost about 2k·log2(n) COPYs. Any other error is thrown.
 */
async function copyOrSplit(
  client: pg.PoolClient,
  entries: readonly Entry[],
  refused: Map<string, string>,
): Promise<void> {
  if (entries.length === 0) return;
  await client.query('SAVEPOINT audit_entries');
  try {
    await copyEntries(client, entries);
    await client.query('RELEASE SAVEPOINT audit_entries');
    return;
  } catch (err) {
    const code = refusedDataCode(err);
    if (code === undefined) throw err;
    await client.query('ROLLBACK TO SAVEPOINT audit_entries; RELEASE SAVEPOINT audit_entries');
    if (entries.length === 1) {
      refused.set(entries[0]!.id, code);
      return;
    }
  }
  const half = Math.ceil(entries.length / 2);
  await copyOrSplit(client, entries.slice(0, half), refused);
  await copyOrSplit(client, entries.slice(half), refused);
}

/**
 * The SQLSTATE of an error PostgreSQL raised because of the data it was given (class 22, data
 * exception: a malformed line, a bad number or time, invalid UTF-8; class 23, integrity: a missing
 * required value), or CopyEndedEarly's code; undefined for any other error.
 */
function refusedDataCode(err: unknown): string | undefined {
  if (err instanceof CopyEndedEarly) return err.code;
  return isPgDataRefusal(err) ? (err as { code: string }).code : undefined;
}

/** Whether the entry carries events in a line format (e<migration>) later than this drainer's. */
function newerFormat(fields: Buffer[]): boolean {
  if (eventsOf(fields)) return false;
  const current = Number(EVENT_FIELD.slice(1));
  for (let i = 0; i < fields.length; i += 2) {
    const format = /^e(\d+)$/.exec(fields[i]!.toString());
    if (format && Number(format[1]) > current) return true;
  }
  return false;
}

/** The COPY text an entry carries and its line format; undefined if it carries none. */
function eventsOf(fields: Buffer[]): { format: Format; text: Buffer } | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i]!.toString();
    if (Object.hasOwn(FORMATS, name)) return { format: name as Format, text: fields[i + 1]! };
  }
  return undefined;
}
