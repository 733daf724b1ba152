/**
 * A tenant database's collections out of and into MongoDB: documents as concatenated BSON (the
 * format of mongodump's .bson files, so bsondump and mongorestore read them), every type exactly as
 * stored; and each collection's options and indexes, recreated after its documents are in.
 */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BSON, type Db, type Document, type IndexDescription } from 'mongodb';
import { PermanentError } from '../errors.ts';

export interface CollectionShape {
  name: string;
  /** createCollection options as listCollections reports them (validator applied with collMod). */
  options: Document;
  /**
   * Index specifications as listIndexes reports them (every option kept: collation, text weights,
   * hidden, ...), without the _id index, the index version and the namespace.
   */
  indexes: (Document & { key: Document; name: string })[];
}

/**
 * The collections of `db` that `include` accepts, with their options and indexes (system collections
 * left out). Views and time-series collections are refused, not silently skipped: a backup does not
 * cover them yet.
 */
export async function readMongoShapes(
  db: Db,
  include: (name: string) => boolean = () => true,
): Promise<CollectionShape[]> {
  const collections = (await db.listCollections().toArray()).filter(
    (c) => !c.name.startsWith('system.') && include(c.name),
  );
  const uncovered = collections.filter((c) => c.type !== undefined && c.type !== 'collection');
  if (uncovered.length > 0)
    throw new PermanentError(
      'unsupported_collection',
      `database ${db.databaseName} holds what backups do not cover yet: ${uncovered.map((c) => `${c.type} ${c.name}`).join(', ')}`,
    );
  const shapes: CollectionShape[] = [];
  for (const c of collections.sort((a, b) => a.name.localeCompare(b.name))) {
    const indexes = (await db.collection(c.name).listIndexes().toArray()) as (Document & {
      key: Document;
      name: string;
    })[];
    shapes.push({
      name: c.name,
      options: ('options' in c ? c.options : undefined) ?? {},
      indexes: indexes
        .filter((i) => i.name !== '_id_')
        .map(({ v: _v, ns: _ns, ...spec }) => spec as CollectionShape['indexes'][number]),
    });
  }
  return shapes;
}

/** Shapes as stored in a backup: canonical Extended JSON, so BSON values in options keep their types. */
export function shapesToText(shapes: CollectionShape[]): string {
  return BSON.EJSON.stringify(shapes, { relaxed: false });
}

export function shapesFromText(text: string): CollectionShape[] {
  return BSON.EJSON.parse(text, { relaxed: false }) as CollectionShape[];
}

/**
 * Documents leave in chunks of about this many bytes. Each chunk is a trip through every stage of
 * the object's pipeline, a zstd call on the thread pool among them: passed on one by one, a million
 * documents of ~120 bytes took 32 s, mostly waiting out each trip.
 */
const OUT_CHUNK_BYTES = 64 * 1024;

/**
 * Documents asked of the server per batch. Left to the server, a batch is up to 16 MiB, which the
 * driver parses whole (each raw document a slice of it): the backup worker's peak RSS over a million
 * listening events was ~510 MiB (a bare cursor alone, ~500). In batches of 1,000: ~205 MiB, and on
 * FerretDB faster too (8.4 s to 5.1 s).
 */
const OUT_BATCH = 1_000;

/** The collection's documents as concatenated raw BSON, in _id order. */
export function documentsOut(db: Db, collection: string): { stream: Readable; documents(): number } {
  let count = 0;
  const cursor = db.collection(collection).find({}, { raw: true, sort: { _id: 1 }, batchSize: OUT_BATCH });
  const stream = Readable.from(
    (async function* () {
      let parts: Buffer[] = [];
      let bytes = 0;
      for await (const raw of cursor as AsyncIterable<Buffer>) {
        count++;
        parts.push(raw);
        bytes += raw.length;
        if (bytes >= OUT_CHUNK_BYTES) {
          yield Buffer.concat(parts, bytes);
          parts = [];
          bytes = 0;
        }
      }
      if (bytes > 0) yield Buffer.concat(parts, bytes);
    })(),
    { objectMode: false },
  );
  return { stream, documents: () => count };
}

/** Splits a concatenated BSON stream into documents, types kept exactly (no promotion to JS numbers). */
function bsonDocuments(): Transform {
  let pending: Buffer = Buffer.alloc(0);
  return new Transform({
    readableObjectMode: true,
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      try {
        while (pending.length >= 4) {
          const size = pending.readInt32LE(0);
          if (size < 5) throw new Error('not a BSON document stream');
          if (pending.length < size) break;
          this.push(BSON.deserialize(pending.subarray(0, size), { promoteValues: false, bsonRegExp: true }));
          pending = pending.subarray(size);
        }
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    flush(callback: TransformCallback) {
      callback(pending.length ? new Error('the BSON stream ends inside a document') : null);
    },
  });
}

const INSERT_BATCH = 1_000;

/** Creates the collection with its options, loads the documents, then builds its indexes. */
export async function loadCollection(db: Db, shape: CollectionShape, source: Readable): Promise<number> {
  const { validator, validationLevel, validationAction, ...options } = shape.options;
  await db.createCollection(shape.name, options);
  // FerretDB ignores validators given to createCollection; collMod applies them on both servers.
  if (validator) await db.command({ collMod: shape.name, validator, validationLevel, validationAction });
  const collection = db.collection(shape.name);
  let batch: Document[] = [];
  let count = 0;
  const docs = bsonDocuments();
  // pipeline, not pipe: a failed read (an object that does not authenticate) reaches the loop below
  // as an error instead of crashing the process, and a failed insert tears the reading down.
  pipeline(source, docs).catch(() => undefined);
  for await (const doc of docs as AsyncIterable<Document>) {
    batch.push(doc);
    if (batch.length === INSERT_BATCH) {
      await collection.insertMany(batch, { ordered: true, bypassDocumentValidation: true });
      count += batch.length;
      batch = [];
    }
  }
  if (batch.length) {
    await collection.insertMany(batch, { ordered: true, bypassDocumentValidation: true });
    count += batch.length;
  }
  if (shape.indexes.length) await collection.createIndexes(shape.indexes as IndexDescription[]);
  return count;
}
