/**
 * Batched backfills for the expand, backfill, contract pattern: walk a collection or table in key
 * order, update one batch at a time, checkpoint after each batch in the tenant store itself, pause
 * between batches so live traffic keeps its share, and resume after a crash where the last
 * checkpoint left off.
 *
 * Exactly once per row or document: in PostgreSQL each batch and its checkpoint commit together. In
 * MongoDB (no transactions on FerretDB; on MongoDB only with a replica set) each document updated is
 * marked with the backfill's id in the field `_dbfleet_backfill` (the run's id), and a document
 * already marked is skipped, so the batch a crash interrupted is not applied twice even by a
 * non-idempotent update such as `$inc`.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Db, Document, ObjectId, UpdateFilter } from 'mongodb';
import type pg from 'pg';
import { InterruptedError, PermanentError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { quoteIdent } from '../stores/identifiers.ts';
import { inTransaction } from '../stores/postgres.ts';

export const BACKFILL_MARK = '_dbfleet_backfill';

interface BackfillCommon {
  /** Unique within its migration; the checkpoint is kept under it. */
  name: string;
  batchSize?: number;
  /** Pause between batches (throttle). */
  pauseMs?: number;
}

export interface MongoBackfillOptions extends BackfillCommon {
  collection: string;
  /** Which documents to visit (must not constrain `_id`: the walk does). */
  filter?: Document;
  /** The same update for every document: one `updateMany` per batch. */
  update?: UpdateFilter<Document>;
  /** Or an update computed from each document (null leaves it as it is): one bulk write per batch. */
  map?: (doc: Document) => UpdateFilter<Document> | null;
}

export interface PostgresBackfillOptions extends BackfillCommon {
  table: string;
  /** A unique, ordered column: the walk's key. */
  key?: string;
  /** The SET clause, e.g. `email_domain = split_part(email, '@', 2)`. */
  set: string;
  /** Optional condition on the rows to visit, e.g. `email_domain IS NULL`. */
  where?: string;
}

export interface BackfillOutcome {
  processed: number;
  batches: number;
  /** Rows or documents already done by an earlier, interrupted run. */
  resumedFrom: number;
}

export interface BackfillScope {
  /** Checkpoint names are `<prefix><name>`: the migration's version scopes them. */
  prefix: string;
  signal: AbortSignal;
  log: Logger;
}

/** The pause between batches; ends early (quietly) when the run is asked to stop. */
const pause = (ms: number, signal: AbortSignal) =>
  ms > 0 ? sleep(ms, undefined, { signal }).catch(() => undefined) : undefined;

/** The `_id` kinds a walk can order by. */
type Key = string | number | ObjectId | Date;
interface Walked {
  _id: Key;
  [field: string]: unknown;
}

interface MongoCheckpoint {
  _id: string;
  /** The mark this run writes: new for every fresh start, so marks left by a reverted run do not count. */
  mark: string;
  lastId?: Key;
  processed: number;
  done?: boolean;
}

export function mongoBackfill(db: Db, scope: BackfillScope) {
  return async (o: MongoBackfillOptions): Promise<BackfillOutcome> => {
    if (!o.update === !o.map)
      throw new PermanentError('invalid_migration', `backfill ${o.name}: give update or map`);
    if (o.filter && '_id' in o.filter)
      throw new PermanentError('invalid_migration', `backfill ${o.name}: the filter must not constrain _id`);
    const id = scope.prefix + o.name;
    const batchSize = o.batchSize ?? 1000;
    const checkpoints = db.collection<MongoCheckpoint>('_dbfleet_backfills');
    const collection = db.collection<Walked>(o.collection);
    const saved = await checkpoints.findOne({ _id: id });
    const resumedFrom = saved?.processed ?? 0;
    let processed = resumedFrom;
    let batches = 0;
    if (saved?.done) return { processed, batches, resumedFrom };
    const mark = saved?.mark ?? `${id}/${randomUUID()}`;
    // The caller's update is written against their document type; the walk only knows `_id`.
    const marked = (update: UpdateFilter<Document>) =>
      ({ ...update, $set: { ...(update.$set ?? {}), [BACKFILL_MARK]: mark } }) as UpdateFilter<Walked>;

    const flush = async (batch: Walked[]) => {
      const first = batch[0]!._id;
      const last = batch.at(-1)!._id;
      if (o.update) {
        await collection.updateMany(
          { ...o.filter, _id: { $gte: first, $lte: last }, [BACKFILL_MARK]: { $ne: mark } },
          marked(o.update),
        );
      } else {
        const ops = batch.flatMap((doc) => {
          const update = doc[BACKFILL_MARK] === mark ? null : o.map!(doc);
          return update ? [{ updateOne: { filter: { _id: doc._id }, update: marked(update) } }] : [];
        });
        if (ops.length) await collection.bulkWrite(ops, { ordered: false });
      }
      processed += batch.length;
      batches++;
      await checkpoints.updateOne({ _id: id }, { $set: { mark, lastId: last, processed } }, { upsert: true });
      if (scope.signal.aborted) throw new InterruptedError(`backfill ${o.name} stopped at a checkpoint`);
      await pause(o.pauseMs ?? 0, scope.signal);
    };

    const filter = { ...o.filter, ...(saved?.lastId !== undefined ? { _id: { $gt: saved.lastId } } : {}) };
    // Only the key and the mark are needed when the update does not depend on the document.
    const cursor = collection
      .find(filter, o.update ? { projection: { _id: 1, [BACKFILL_MARK]: 1 } } : {})
      .sort({ _id: 1 })
      .batchSize(batchSize);
    let batch: Walked[] = [];
    try {
      for await (const doc of cursor) {
        batch.push(doc);
        if (batch.length >= batchSize) {
          await flush(batch);
          batch = [];
        }
      }
      if (batch.length) await flush(batch);
    } finally {
      await cursor.close();
    }
    await checkpoints.updateOne({ _id: id }, { $set: { mark, done: true, processed } }, { upsert: true });
    scope.log.info({ backfill: o.name, processed, batches, resumedFrom }, 'backfill done');
    return { processed, batches, resumedFrom };
  };
}

const PG_CHECKPOINTS = `CREATE TABLE IF NOT EXISTS _dbfleet_backfills (
  name text PRIMARY KEY, last_key text, processed bigint NOT NULL DEFAULT 0, done boolean NOT NULL DEFAULT false)`;

export function postgresBackfill(
  client: pg.PoolClient,
  migrationIsTransactional: boolean,
  scope: BackfillScope,
) {
  return async (o: PostgresBackfillOptions): Promise<BackfillOutcome> => {
    if (migrationIsTransactional)
      throw new PermanentError(
        'invalid_migration',
        `backfill ${o.name}: a batched backfill commits per batch, so its migration needs transaction: false`,
      );
    const id = scope.prefix + o.name;
    const batchSize = o.batchSize ?? 1000;
    const table = quoteIdent(o.table);
    const key = quoteIdent(o.key ?? 'id');
    await client.query(PG_CHECKPOINTS);
    const type = await client.query<{ type: string }>(
      `SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute
        WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped`,
      [o.table, o.key ?? 'id'],
    );
    if (!type.rows[0])
      throw new PermanentError('undefined_column', `backfill ${o.name}: no key column ${key} in ${table}`);
    const saved = await client.query<{ last_key: string | null; processed: string; done: boolean }>(
      'SELECT last_key, processed, done FROM _dbfleet_backfills WHERE name = $1',
      [id],
    );
    const resumedFrom = Number(saved.rows[0]?.processed ?? 0);
    let processed = resumedFrom;
    let batches = 0;
    if (saved.rows[0]?.done) return { processed, batches, resumedFrom };
    let last = saved.rows[0]?.last_key ?? null;
    // The key's own type comes from the catalogue, so the comparison uses its index.
    const sql = `WITH batch AS (
        SELECT ${key} FROM ${table}
         WHERE ($1::text IS NULL OR ${key} > $1::text::${type.rows[0].type})${o.where ? ` AND (${o.where})` : ''}
         ORDER BY ${key} LIMIT $2 FOR UPDATE),
      done AS (UPDATE ${table} t SET ${o.set} FROM batch WHERE t.${key} = batch.${key} RETURNING t.${key})
      SELECT max(${key})::text AS last, count(*)::int AS n FROM done`;
    for (;;) {
      // The batch and its checkpoint commit together.
      const n = await inTransaction(client, async () => {
        const { rows } = await client.query<{ last: string | null; n: number }>(sql, [last, batchSize]);
        const count = rows[0]!.n;
        const next = count > 0 ? rows[0]!.last : last;
        await client.query(
          `INSERT INTO _dbfleet_backfills (name, last_key, processed, done) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET last_key = $2, processed = $3, done = $4`,
          [id, next, processed + count, count < batchSize],
        );
        last = next;
        return count;
      });
      processed += n;
      batches++;
      if (n < batchSize) break;
      if (scope.signal.aborted) throw new InterruptedError(`backfill ${o.name} stopped at a checkpoint`);
      await pause(o.pauseMs ?? 0, scope.signal);
    }
    scope.log.info({ backfill: o.name, processed, batches, resumedFrom }, 'backfill done');
    return { processed, batches, resumedFrom };
  };
}
