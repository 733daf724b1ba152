/**
 * The two walks of a MongoDB cleanup (see mongo-collection.ts), one batch a step. A step returns
 * `batch` after a batch (the caller reports progress and rests), `again` after a move that deleted
 * nothing new (a retried batch, a new walk, entering or leaving a crowded instant), `end` when the
 * walk is over.
 */
import { BSON, type Document, type Filter } from 'mongodb';
import type { BatchArchive } from './archive.ts';
import type { ResolvedCollection } from './mongo-collection.ts';
import type { PolicyOutcome, RunScope } from './outcome.ts';
import type { Pace } from './pace.ts';

const { EJSON } = BSON;

/** Walks of one kind, one per `_id` type at least; a bound against documents made old without end. */
const MAX_WALKS = 32;

export type Step = 'batch' | 'again' | 'end';

export interface Walker {
  r: ResolvedCollection;
  s: RunScope;
  pace: Pace;
  /** The policy's match with the run's cutoff. */
  match: Filter<Document>;
  outcome(): PolicyOutcome;
  count(o: PolicyOutcome): void;
  save(): Promise<void>;
}

/** A walk by `_id`: `_id`s as canonical Extended JSON. */
export interface IdWalk {
  walks: number;
  after: string | null;
  /** A batch (its first and last `_id`, of one BSON type) whose delete may or may not have happened. */
  pending?: { from: string; upTo: string; found: number; seq: number };
}

/** A walk by the time field's index: every matching document older than `since` (ISO) is gone. */
export interface TimeWalk {
  walks: number;
  since: string | null;
  /** A batch, the times [from, below) (below null: up to the cutoff), whose delete may or may not have happened. */
  pending?: { from: string | null; below: string | null; next: string; found: number; seq: number };
  /** An instant holding more matching documents than a batch: walked by `_id` among them. */
  crowd?: IdWalk & { at: string };
}

export async function idStep(
  w: Walker,
  walk: IdWalk,
  match: Filter<Document>,
  archive: BatchArchive | undefined,
): Promise<Step> {
  const projection = archive ? {} : { projection: { _id: 1 } };
  if (walk.pending) {
    // The batch a crash interrupted: what of it still matches is archived and deleted now.
    const { from, upTo, found, seq } = walk.pending;
    const started = performance.now();
    const left = await w.r.collection
      .find({ ...match, ...byId({ $gte: parseId(from), $lte: parseId(upTo) }) }, projection)
      .hint({ _id: 1 })
      .toArray();
    const archived = archive ? await archiveBatch(archive, seq, left, true) : 0;
    const deleted = await deleteEach(w, match, left);
    addBatch(w, found, Math.max(found, deleted), archived, performance.now() - started);
    walk.after = upTo;
    delete walk.pending;
    await w.save();
    return 'again';
  }
  const size = w.pace.size;
  const started = performance.now();
  const found = await w.r.collection
    .find({ ...match, ...(walk.after !== null ? byId({ $gt: parseId(walk.after) }) : {}) }, projection)
    .sort({ _id: 1 })
    // FerretDB, left to itself, planned a bitmap scan of every `_id` past the position, then a
    // sort: 2.2 s a batch in 2M documents; walking the `_id` index in order and stopping at the
    // limit, 10 ms.
    .hint({ _id: 1 })
    .limit(size)
    .toArray();
  if (found.length === 0) return walkAgain(w, walk, () => (walk.after = null), walk.after === null);
  // One BSON type per batch, so that its range names exactly what it found.
  const docs = sameTypePrefix(found);
  const upTo = idText(docs.at(-1)!);
  const seq = w.outcome().batches;
  walk.pending = { from: idText(docs[0]!), upTo, found: docs.length, seq };
  await w.save();
  const archived = archive ? await archiveBatch(archive, seq, docs, false) : 0;
  // Exactly the documents read (and archived), if they still match: never one made old since.
  const deleted = await deleteEach(w, match, docs);
  const ms = performance.now() - started;
  addBatch(w, docs.length, deleted, archived, ms);
  walk.after = upTo;
  delete walk.pending;
  await w.save();
  w.pace.took(ms, found.length);
  return 'batch';
}

export async function timeStep(w: Walker, t: TimeWalk): Promise<Step> {
  const field = w.r.policy.timeField;
  if (t.crowd) {
    const { at } = t.crowd;
    const step = await idStep(w, t.crowd, { ...w.r.where, [field]: { $eq: new Date(at) } }, undefined);
    if (step !== 'end') return step;
    t.since = at;
    delete t.crowd;
    await w.save();
    return 'again';
  }
  const range = (from: string | null, below: string | null): Filter<Document> => ({
    ...w.r.where,
    [field]: { ...(from !== null ? { $gte: new Date(from) } : {}), $lt: below !== null ? new Date(below) : w.s.cutoff },
  });
  if (t.pending) {
    const { from, below, next, found } = t.pending;
    const started = performance.now();
    const { deletedCount } = await w.r.collection.deleteMany(range(from, below));
    const n = Math.max(found, deletedCount);
    addBatch(w, n, n, 0, performance.now() - started);
    t.since = next;
    delete t.pending;
    await w.save();
    return 'again';
  }
  const size = w.pace.size;
  const started = performance.now();
  const read = await w.r.collection
    .find(range(t.since, null), { projection: { _id: 0, [field]: 1 } })
    .sort({ [field]: 1 })
    .hint(w.r.timeIndex!)
    .limit(size)
    .toArray();
  if (read.length === 0) return walkAgain(w, t, () => (t.since = null), t.since === null);
  // Every time read is a date: the range compares within dates only.
  const times = read.map((d) => (d[field] as Date).getTime());
  const last = times.at(-1)!;
  // A full batch stops short of its last instant, which may hold more documents than were read;
  // a short one is the walk's tail and takes everything up to the cutoff.
  const full = read.length === size;
  const found = full ? times.indexOf(last) : read.length;
  if (found === 0) {
    t.crowd = { at: new Date(last).toISOString(), walks: 1, after: null };
    await w.save();
    return 'again';
  }
  const below = full ? new Date(last).toISOString() : null;
  t.pending = { from: t.since, below, next: new Date(last).toISOString(), found, seq: w.outcome().batches };
  await w.save();
  const { deletedCount } = await w.r.collection.deleteMany(range(t.since, below));
  const ms = performance.now() - started;
  addBatch(w, Math.max(found, deletedCount), deletedCount, 0, ms);
  t.since = t.pending.next;
  delete t.pending;
  await w.save();
  w.pace.took(ms, read.length);
  return 'batch';
}

/**
 * The walk's end. It starts over from the beginning (resetting its position) until a walk from the
 * beginning finds nothing, at most MAX_WALKS times.
 */
async function walkAgain(
  w: Walker,
  walk: { walks: number },
  restart: () => void,
  fromStart: boolean,
): Promise<Step> {
  if (fromStart) return 'end';
  if (walk.walks >= MAX_WALKS) {
    w.s.log.warn({ policy: w.r.policy.name, walks: walk.walks }, 'cleanup stopped walking: documents keep matching');
    return 'end';
  }
  walk.walks++;
  restart();
  await w.save();
  return 'again';
}

function addBatch(w: Walker, matched: number, deleted: number, archived: number, ms: number) {
  const o = w.outcome();
  w.count({
    ...o,
    matched: o.matched + matched,
    deleted: o.deleted + deleted,
    archived: o.archived + archived,
    batches: o.batches + 1,
    longestBatchMs: Math.max(o.longestBatchMs, Math.round(ms)),
  });
}

/**
 * Deletes these documents if they still match, one `deleteOne` by `_id` each in one unordered bulk
 * write: FerretDB serves a delete by `_id` through its index, where a deleteMany by an `_id` range or
 * `$in` scanned the whole collection (1.25 s a batch in 2M documents, whatever its size).
 */
async function deleteEach(w: Walker, match: Filter<Document>, docs: Document[]): Promise<number> {
  if (docs.length === 0) return 0;
  const { deletedCount } = await w.r.collection.bulkWrite(
    docs.map((doc) => ({ deleteOne: { filter: { ...match, ...byId({ $eq: doc._id }) } } })),
    { ordered: false },
  );
  return deletedCount;
}

/** A condition on `_id`s of any BSON type (the driver's types assume ObjectIds). */
const byId = (condition: Document): Filter<Document> => ({ _id: condition }) as Filter<Document>;

const idText = (doc: Document) => EJSON.stringify({ id: doc._id as unknown }, { relaxed: false });

const parseId = (text: string): unknown => (EJSON.parse(text, { relaxed: false }) as { id: unknown }).id;

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
      lines.set(idText(EJSON.parse(line, { relaxed: false }) as Document), line);
  for (const doc of docs) lines.set(idText(doc), EJSON.stringify(doc, { relaxed: false }));
  if (lines.size > 0) await archive.write(seq, [...lines.values()]);
  return lines.size;
}
