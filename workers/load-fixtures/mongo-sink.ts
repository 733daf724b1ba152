/**
 * Loads batches into a tenant collection with unordered bulk writes. FerretDB has no multi-document
 * transactions (MongoDB has them only on a replica set) to bind a batch to its checkpoint, so writes
 * are made idempotent instead: every document gets a deterministic _id (its own, or one derived from
 * the run and record number), and a delivery that may follow another's partial writes tells its
 * run's own writes apart from real duplicates.
 */
import { createHash } from 'node:crypto';
import { BSON, MongoBulkWriteError, ObjectId, type Collection, type Db, type Document } from 'mongodb';

const { EJSON } = BSON;
import { PermanentError, TransientError } from '../../src/errors.ts';
import { collectionExists } from '../../src/stores/mongo.ts';
import type { Checkpoint } from '../../src/runtime/checkpoint.ts';
import { lastByKey, withRefused, type Progress, type Rejection, type Row, type Sink } from './sink.ts';

const DUPLICATE_KEY = 11000;
/** Rounds of re-inserting documents a server neither stored nor reported (see insert). */
const MAX_INSERT_ROUNDS = 3;

export interface MongoSinkOptions {
  db: Db;
  collection: string;
  mode: 'insert' | 'upsert' | 'replace';
  key?: readonly string[] | undefined;
  /** The run's identity (unique for all time): derived _ids are built from it. */
  runId: string;
  /** An earlier delivery of this job started: documents it wrote may be there already. */
  redelivered: boolean;
  checkpoint: Checkpoint;
}

export function derivedId(runId: string, line: number): ObjectId {
  return new ObjectId(createHash('sha256').update(`${runId}:${line}`).digest().subarray(0, 12));
}

export function mongoSink(o: MongoSinkOptions): Sink {
  const collection = o.db.collection(o.collection);
  /**
   * Whether earlier deliveries of this run may have written documents this one is about to write:
   * after a checkpoint, or when one started before (killed, handed back, its acknowledgement lost),
   * with or without a checkpoint. Not only the first batch: a Redis that lost its last writes can
   * put the checkpoint several batches back.
   */
  let mayHoldOwnWrites = o.redelivered;
  let resumed = false;
  let batch: Row[] = [];
  /** Rows of this batch no MongoDB server could take (field names, key values). */
  let refused: Rejection[] = [];

  const toDoc = (r: Row) => ({ _id: derivedId(o.runId, r.line), ...r.value }) as Document;

  const insert = async (rows: Row[]): Promise<Rejection[]> => {
    let pending = rows.map((row) => ({ row, doc: toDoc(row) }));
    const rejections: Rejection[] = [];
    for (let round = 0; pending.length > 0; round++) {
      if (round === MAX_INSERT_ROUNDS)
        throw new TransientError(
          'mongo_partial_write',
          `MongoDB neither stored nor refused ${pending.length} document(s) of a batch`,
        );
      const outcome = await insertOnce(collection, pending, mayHoldOwnWrites);
      rejections.push(...outcome.rejections);
      pending = outcome.unaccounted;
    }
    return rejections;
  };

  /**
   * Upsert as "delete the batch's keys, then insert the batch": one $in delete and one insert per
   * batch, fast on MongoDB and FerretDB 2 alike, indexed key or not. A bulk replaceOne with upsert
   * is one filtered write per document: on FerretDB 2.5 about 60,000 documents/s by `_id` but 84/s
   * by an indexed other field (each write scans the collection), and on MongoDB without an index on
   * the key a scan per document too. Each batch is idempotent (a retry deletes and inserts the
   * same documents again); readers may see a batch's documents missing for the moment between. Key
   * values are plain values (add() refuses objects) and are matched with $in or $eq, so a value from
   * the data never acts as a query operator.
   */
  const upsert = async (rows: Row[]): Promise<Rejection[]> => {
    const key = o.key!;
    // EJSON: keys of different BSON types (a date, its text) are different keys.
    const unique = lastByKey(rows, key, (values) => EJSON.stringify(values));
    // An array field matches a value it contains: only documents holding the value itself qualify.
    const notArray = { $not: { $type: 'array' } };
    const filter =
      key.length === 1
        ? { [key[0]!]: { $in: unique.map((r) => r.value[key[0]!]), ...notArray } }
        : {
            $or: unique.map((r) => Object.fromEntries(key.map((k) => [k, { $eq: r.value[k], ...notArray }]))),
          };
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
      mayHoldOwnWrites ||= resumed;
      return saved;
    },

    add(line, value) {
      const refusal =
        nulFieldRefusal(value) ??
        ('_id' in value ? keyRefusal(value, ['_id']) : undefined) ??
        (o.mode === 'upsert' ? keyRefusal(value, o.key!) : undefined);
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
      await o.checkpoint.set(withRefused(next, rejections));
      return rejections;
    },

    async finish(progress) {
      await o.checkpoint.finish({ ...progress, done: true });
    },
  };
}

interface Pending {
  row: Row;
  doc: Document;
}

/**
 * One unordered insert. Returns the documents refused (by error code only: MongoDB's messages quote
 * values, which may be personal) and those the server neither stored nor reported: servers differ in
 * what a failed bulk insert counts (MongoDB goes on past an error, others may stop), so after an error
 * the batch is checked against the collection instead of trusting `insertedCount`.
 *
 * An insert that failed as a whole (the driver wraps a lost connection or a server's command error in
 * the same error type, with no document's error in it) is thrown as the driver's own error: the server
 * is failing, so the attempt fails as transient and BullMQ retries it with backoff rather than
 * re-inserting at once; the retry's first batch recognises what this one stored.
 */
async function insertOnce(
  collection: Collection,
  pending: Pending[],
  mayHoldOwnWrites: boolean,
): Promise<{ rejections: Rejection[]; unaccounted: Pending[] }> {
  let writeErrors: { index: number; code: number }[];
  try {
    const result = await collection.insertMany(
      pending.map((p) => p.doc),
      { ordered: false },
    );
    if (result.insertedCount === pending.length) return { rejections: [], unaccounted: [] };
    writeErrors = [];
  } catch (err) {
    if (!(err instanceof MongoBulkWriteError)) throw err;
    writeErrors = (Array.isArray(err.writeErrors) ? err.writeErrors : [err.writeErrors]).map((e) => ({
      index: e.index,
      code: e.code,
    }));
    if (writeErrors.length === 0) throw err.errorResponse instanceof Error ? err.errorResponse : err;
  }
  const refusedAt = new Map(writeErrors.map((e) => [e.index, e.code]));
  const stored = await storedDocs(
    collection,
    pending.map((p) => p.doc._id),
  );
  const rejections: Rejection[] = [];
  const unaccounted: Pending[] = [];
  pending.forEach((p, index) => {
    const code = refusedAt.get(index);
    const existing = stored.get(idKey(p.doc._id));
    if (code === undefined) {
      if (!existing) unaccounted.push(p);
      return;
    }
    // This very document is there already, written by an earlier delivery of the same run: an _id
    // derived from this run can be nothing else; a document's own _id, only if such a delivery was.
    const derived = p.row.value._id === undefined;
    if (
      code === DUPLICATE_KEY &&
      existing &&
      (derived || (mayHoldOwnWrites && sameDocument(existing, p.doc)))
    )
      return;
    rejections.push({
      line: p.row.line,
      reason:
        code === DUPLICATE_KEY
          ? 'duplicate key (_id or a unique index)'
          : `refused by MongoDB (error code ${code})`,
    });
  });
  return { rejections, unaccounted };
}

async function storedDocs(collection: Collection, ids: unknown[]): Promise<Map<string, Document>> {
  const docs = await collection.find({ _id: { $in: ids } } as Document).toArray();
  return new Map(docs.map((d) => [idKey(d._id), d]));
}

const idKey = (id: unknown) => EJSON.stringify({ id }, { relaxed: false });

/** Equal as BSON values, whatever order the server keeps the fields in. */
function sameDocument(a: Document, b: Document): boolean {
  return (
    EJSON.stringify(sortedKeys(a), { relaxed: false }) === EJSON.stringify(sortedKeys(b), { relaxed: false })
  );
}

function sortedKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedKeys);
  if (value === null || typeof value !== 'object' || value.constructor !== Object) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sortedKeys((value as Record<string, unknown>)[k])]),
  );
}

/** Keys (_id, upsert keys) are matched by value: one that is missing, null, an object or an array is refused. */
export function keyRefusal(value: Record<string, unknown>, key: readonly string[]): string | undefined {
  for (const k of key) {
    const v = value[k];
    if (v === undefined) return `${k}: the key field is missing`;
    // Matched as a value, null would also match every document that lacks the field.
    if (v === null) return `${k}: a key field must not be null`;
    // BSON scalars (an Int32, a Long, an ObjectId from Extended JSON) carry their type in _bsontype.
    if (
      v !== null &&
      typeof v === 'object' &&
      !(v instanceof Date) &&
      !(v instanceof ObjectId) &&
      !('_bsontype' in v)
    )
      return `${k}: a key field must hold a plain value (string, number, boolean or date), not an object or array`;
  }
  return undefined;
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
