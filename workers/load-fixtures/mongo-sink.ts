/**
 * Loads batches into a tenant collection with unordered bulk writes. MongoDB (and FerretDB) give us no
 * multi-document transactions to bind a batch to its checkpoint, so writes are made idempotent instead:
 * every document gets a deterministic _id (its own, or one derived from the load and record number),
 * and the one batch that may have been half-written before a crash tolerates duplicate keys.
 */
import { createHash } from 'node:crypto';
import { MongoBulkWriteError, ObjectId, type Db, type Document } from 'mongodb';
import { PermanentError } from '../../src/errors.ts';
import { collectionExists } from '../../src/stores/mongo.ts';
import type { Checkpoint } from '../../src/runtime/checkpoint.ts';
import { withRefused, type Progress, type Rejection, type Row, type Sink } from './sink.ts';

const DUPLICATE_KEY = 11000;

export interface MongoSinkOptions {
  db: Db;
  collection: string;
  mode: 'insert' | 'upsert' | 'replace';
  key?: readonly string[] | undefined;
  loadKey: string;
  checkpoint: Checkpoint;
}

export function derivedId(loadKey: string, line: number): ObjectId {
  return new ObjectId(createHash('sha256').update(`${loadKey}:${line}`).digest().subarray(0, 12));
}

export function mongoSink(o: MongoSinkOptions): Sink {
  const collection = o.db.collection(o.collection);
  /** True for the first batch after a resume: it may already be partly in the collection. */
  let resumed = false;
  let batch: Row[] = [];
  /** Rows of this batch no MongoDB server could take (see nulFieldRefusal). */
  let refused: Rejection[] = [];

  /**
   * Inserts unordered and turns the documents MongoDB refused into rejections; anything else (nothing
   * written, or a count that does not add up) is thrown, never reported as loaded.
   */
  const insert = async (rows: Row[]): Promise<Rejection[]> => {
    const docs = rows.map((r) => ({ _id: derivedId(o.loadKey, r.line), ...r.value }) as Document);
    try {
      await collection.insertMany(docs, { ordered: false });
      return [];
    } catch (err) {
      if (!(err instanceof MongoBulkWriteError)) throw err;
      const errors = Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors];
      if (errors.length === 0 || err.result.insertedCount + errors.length !== docs.length) throw err;
      return errors.flatMap((e) => {
        // After a resume, duplicates are this load's own earlier writes.
        if (e.code === DUPLICATE_KEY && resumed) return [];
        // By code only: MongoDB's message quotes the document's values, which may be personal.
        const reason =
          e.code === DUPLICATE_KEY
            ? 'duplicate key (_id or a unique index)'
            : `refused by MongoDB (error code ${e.code})`;
        return [{ line: rows[e.index]!.line, reason }];
      });
    }
  };

  /**
   * Upsert as "delete the batch's keys, then insert the batch". Bulk replaceOne/updateOne with upsert
   * is fast on MongoDB but crawls on FerretDB (1,000 existing documents took minutes), while $in
   * deletes and inserts are fast on both. Each batch is idempotent (a retry deletes and inserts the
   * same documents again); readers may see a batch's documents missing for the moment between.
   */
  const upsert = async (rows: Row[]): Promise<Rejection[]> => {
    const key = o.key!;
    const last = new Map<string, Row>(); // last row wins within a batch
    for (const r of rows) last.set(JSON.stringify(key.map((k) => r.value[k])), r);
    const unique = [...last.values()];
    const filter =
      key.length === 1
        ? { [key[0]!]: { $in: unique.map((r) => r.value[key[0]!]) } }
        : { $or: unique.map((r) => Object.fromEntries(key.map((k) => [k, r.value[k]]))) };
    await collection.deleteMany(filter);
    return insert(unique);
  };

  return {
    async prepare() {
      const exists = await collectionExists(o.db, o.collection);
      if (!exists)
        throw new PermanentError(
          'undefined_collection',
          `target collection ${o.db.databaseName}.${o.collection} does not exist`,
        );
      const saved = await o.checkpoint.get<Progress>();
      resumed = saved !== undefined;
      return saved;
    },

    add(line, value) {
      const refusal = nulFieldRefusal(value);
      if (refusal) refused.push({ line, reason: refusal });
      else batch.push({ line, value });
    },

    async write(next) {
      const rows = batch;
      const unencodable = refused;
      batch = [];
      refused = [];
      // replace: a fresh start (no checkpoint yet) empties the collection; a resumed one must not.
      if (o.mode === 'replace' && next.batches === 1 && !resumed) await collection.deleteMany({});
      const refusedByServer =
        rows.length === 0 ? [] : o.mode === 'upsert' ? await upsert(rows) : await insert(rows);
      const rejections = [...unencodable, ...refusedByServer];
      resumed = false;
      await o.checkpoint.set(withRefused(next, rejections.length));
      return rejections;
    },

    async finish(progress) {
      await o.checkpoint.set({ ...progress, done: true });
    },
  };
}

/**
 * BSON field names are NUL-terminated, so the driver refuses a whole batch over one such name:
 * found here, it is one row's rejection instead.
 */
export function nulFieldRefusal(value: object, path = ''): string | undefined {
  // for-in rather than Object.entries: it runs for every document loaded.
  for (const key in value) {
    if (key.includes('\0'))
      return `${path || key.replaceAll('\0', '\\0')}: a field name contains a NUL character, which MongoDB cannot store`;
    const v = (value as Record<string, unknown>)[key];
    if (v !== null && typeof v === 'object' && !(v instanceof Date)) {
      const inner = nulFieldRefusal(v, path ? `${path}.${key}` : key);
      if (inner) return inner;
    }
  }
  return undefined;
}
