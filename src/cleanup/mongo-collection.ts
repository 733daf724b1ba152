/**
 * Retention on a MongoDB collection: documents whose time field is a date older than the cutoff (and
 * that match the policy's `where`) are deleted in batches walked by `_id`, each sized toward a target
 * duration. Without transactions (FerretDB has none) a batch cannot commit with its checkpoint, so the
 * checkpoint is written before the delete, naming the batch (its `_id` range and how many it found).
 * A batch deletes exactly the documents it read (and archived), if they still match; a retry that
 * finds a batch pending deletes what of its range still matches and counts the larger of what it
 * found and what it deletes, which is exact unless something else deletes the same documents
 * meanwhile.
 *
 * Only dates match: a time held as a string or a number is not a date to MongoDB (the same rule as TTL
 * indexes). A range bound compares within one BSON type, so each batch holds `_id`s of one type, and
 * the walk starts over from the first matching document until none is left.
 */
import { BSON, type Collection, type Db, type Document, type Filter } from 'mongodb';
import { PermanentError } from '../errors.ts';
import { collectionExists } from '../stores/mongo.ts';
import type { BatchArchive } from './archive.ts';
import { emptyOutcome, type PolicyOutcome, type RunScope } from './outcome.ts';
import { pace, rest } from './pace.ts';
import type { DataPolicy } from './policies.ts';

const { EJSON } = BSON;

type MongoPolicy = DataPolicy & { store: 'mongo' };

/** Walks of the collection, one per `_id` type at least; a bound against documents made old without end. */
const MAX_WALKS = 32;

export interface ResolvedCollection {
  policy: MongoPolicy;
  collection: Collection;
  /** The match, without the time bound (set per run). */
  where: Filter<Document>;
}

export async function resolveCollection(db: Db, policy: MongoPolicy): Promise<ResolvedCollection> {
  if (!(await collectionExists(db, policy.target)))
    throw new PermanentError(
      'policy_mismatch',
      `mongo ${policy.target} (policy ${policy.name}): no such collection`,
    );
  const where: Filter<Document> = {};
  // Values only ever as $eq / $in operands: a value can never become an operator.
  for (const [field, value] of Object.entries(policy.where ?? {}))
    where[field] = Array.isArray(value) ? { $in: value } : { $eq: value };
  return { policy, collection: db.collection(policy.target), where };
}

const matchOf = (r: ResolvedCollection, cutoff: Date): Filter<Document> => ({
  ...r.where,
  [r.policy.timeField]: { $lt: cutoff },
});

export async function surveyCollection(r: ResolvedCollection, s: RunScope): Promise<PolicyOutcome> {
  const field = `$${r.policy.timeField}`;
  const [row] = await r.collection
    .aggregate<{ n: number; oldest: Date | null; newest: Date | null }>([
      { $match: matchOf(r, s.cutoff) },
      { $group: { _id: null, n: { $sum: 1 }, oldest: { $min: field }, newest: { $max: field } } },
    ])
    .toArray();
  return {
    ...emptyOutcome(r.policy.name, 'mongo', true),
    matched: row?.n ?? 0,
    oldest: row?.oldest?.toISOString() ?? null,
    newest: row?.newest?.toISOString() ?? null,
  };
}

/** Where a policy's walk stands, in the run's checkpoint. `_id`s as canonical Extended JSON. */
export interface MongoProgress {
  outcome: PolicyOutcome;
  walks: number;
  after: string | null;
  /** A batch (its first and last `_id`, of one BSON type) whose delete may or may not have happened. */
  pending?: { from: string; upTo: string; found: number; seq: number };
  done: boolean;
}

export async function cleanCollection(
  r: ResolvedCollection,
  s: RunScope,
  archive: BatchArchive | undefined,
  saved: MongoProgress | undefined,
  save: (p: MongoProgress) => Promise<void>,
): Promise<PolicyOutcome> {
  const p: MongoProgress = saved ?? {
    outcome: emptyOutcome(r.policy.name, 'mongo', false),
    walks: 1,
    after: null,
    done: false,
  };
  if (p.done) return p.outcome;
  const match = matchOf(r, s.cutoff);
  const batchPace = pace(r.policy.batch);
  for (;;) {
    s.throwIfInterrupted();
    if (p.pending) {
      // The batch a crash interrupted: what of it still matches is archived and deleted now.
      const { from, upTo, found, seq } = p.pending;
      const started = performance.now();
      const left = await r.collection
        .find(
          { ...match, ...byId({ $gte: parseId(from), $lte: parseId(upTo) }) },
          archive ? {} : { projection: { _id: 1 } },
        )
        .hint({ _id: 1 })
        .toArray();
      const archived = archive ? await archiveBatch(archive, seq, left, true) : 0;
      const deletedCount = await deleteEach(r, match, left);
      finishBatch(p, upTo, found, Math.max(found, deletedCount), archived, performance.now() - started);
      await save(p);
      continue;
    }
    const size = batchPace.size;
    const started = performance.now();
    const found = await r.collection
      .find(
        { ...match, ...(p.after !== null ? byId({ $gt: parseId(p.after) }) : {}) },
        archive ? {} : { projection: { _id: 1 } },
      )
      .sort({ _id: 1 })
      // FerretDB, left to itself, planned a bitmap scan of every `_id` past the position, then a
      // sort: 2.2 s a batch in 2M documents; walking the `_id` index in order and stopping at the
      // limit, 10 ms.
      .hint({ _id: 1 })
      .limit(size)
      .toArray();
    if (found.length === 0) {
      // The walk's end. A range bound compares within one BSON type, so `_id`s of other types (and
      // documents made old since) are found by walking again from the start; done when none are.
      if (p.after === null || p.walks >= MAX_WALKS) {
        if (p.after !== null)
          s.log.warn({ walks: p.walks }, 'cleanup stopped walking: documents keep matching');
        p.done = true;
        await save(p);
        return p.outcome;
      }
      p.walks++;
      p.after = null;
      await save(p);
      continue;
    }
    // One BSON type per batch, so that its range names exactly what it found.
    const docs = sameTypePrefix(found);
    const from = idText(docs[0]!);
    const upTo = idText(docs.at(-1)!);
    const seq = p.outcome.batches;
    p.pending = { from, upTo, found: docs.length, seq };
    await save(p);
    const archived = archive ? await archiveBatch(archive, seq, docs, false) : 0;
    // Exactly the documents read (and archived), if they still match: never one made old since.
    const deletedCount = await deleteEach(r, match, docs);
    const ms = performance.now() - started;
    finishBatch(p, upTo, docs.length, deletedCount, archived, ms);
    await save(p);
    await s.progress(p.outcome);
    batchPace.took(ms, found.length);
    await rest(batchPace.pauseMs, s.signal);
  }
}

/**
 * Deletes these documents if they still match, one `deleteOne` by `_id` each in one unordered bulk
 * write: FerretDB serves a delete by `_id` through its index, where a deleteMany by an `_id` range or
 * `$in` scanned the whole collection (1.25 s a batch in 2M documents, whatever its size).
 */
async function deleteEach(r: ResolvedCollection, match: Filter<Document>, docs: Document[]): Promise<number> {
  if (docs.length === 0) return 0;
  const { deletedCount } = await r.collection.bulkWrite(
    docs.map((doc) => ({ deleteOne: { filter: { ...match, ...byId({ $eq: doc._id }) } } })),
    { ordered: false },
  );
  return deletedCount;
}

/** A condition on `_id`s of any BSON type (the driver's types assume ObjectIds). */
const byId = (condition: Document): Filter<Document> => ({ _id: condition }) as Filter<Document>;

const idText = (doc: Document) => EJSON.stringify({ id: doc._id as unknown }, { relaxed: false });

/** MongoDB's sort order groups `_id`s by type (all numbers together, whatever their BSON type). */
function typeOf(value: unknown): string {
  if (typeof value === 'number') return 'number';
  if (value !== null && typeof value === 'object' && '_bsontype' in value) {
    const t = String(value._bsontype);
    return ['Int32', 'Double', 'Long', 'Decimal128'].includes(t) ? 'number' : t;
  }
  if (value instanceof Date) return 'date';
  return value === null ? 'null' : typeof value;
}

function sameTypePrefix(docs: Document[]): Document[] {
  const type = typeOf(docs[0]!._id);
  const end = docs.findIndex((d) => typeOf(d._id) !== type);
  return end === -1 ? docs : docs.slice(0, end);
}

function finishBatch(
  p: MongoProgress,
  upTo: string,
  found: number,
  deleted: number,
  archived: number,
  ms: number,
) {
  p.outcome = {
    ...p.outcome,
    matched: p.outcome.matched + found,
    deleted: p.outcome.deleted + deleted,
    archived: p.outcome.archived + archived,
    batches: p.outcome.batches + 1,
    longestBatchMs: Math.max(p.outcome.longestBatchMs, Math.round(ms)),
  };
  p.after = upTo;
  delete p.pending;
}

const parseId = (text: string): unknown => (EJSON.parse(text, { relaxed: false }) as { id: unknown }).id;

/**
 * Writes the batch's documents (canonical Extended JSON, so dates, ObjectIds and 64-bit integers
 * survive). A batch tried again keeps what its earlier try archived: the documents it deleted then
 * are in that object and nowhere else.
 */
async function archiveBatch(
  archive: BatchArchive,
  seq: number,
  docs: Document[],
  retry: boolean,
): Promise<number> {
  const lines = new Map<string, string>();
  if (retry)
    for (const line of (await archive.read(seq)) ?? [])
      lines.set(idOf(EJSON.parse(line, { relaxed: false }) as Document), line);
  for (const doc of docs) lines.set(idOf(doc), EJSON.stringify(doc, { relaxed: false }));
  if (lines.size > 0) await archive.write(seq, [...lines.values()]);
  return lines.size;
}

const idOf = (doc: Document) => EJSON.stringify({ id: doc._id as unknown }, { relaxed: false });
