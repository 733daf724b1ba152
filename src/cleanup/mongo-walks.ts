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

type Step = 'batch' | 'again' | 'end';

export interface Walker {
  r: ResolvedCollection;
  s: RunScope;
  pace: Pace;
  /** The policy's match with the run's cutoff. */
  match: Filter<Document>;
  /** Where the run's totals are kept (the checkpoint `save` writes). */
  progress: { outcome: PolicyOutcome };
  save(): Promise<void>;
  /** The next window of a walk by time, counted while the batch before it was deleted. */
  ahead?: { from: string | null; below: string; n: Promise<number> };
}

/** A walk by `_id`: `_id`s as canonical Extended JSON. */
export interface IdWalk {
  walks: number;
  after: string | null;
  /** A batch (its first and last `_id`, of one BSON type) whose delete may or may not have happened. */
  pending?: { from: string; upTo: string; found: number; seq: number };
}

/**
 * A walk by the time field's index, down from the cutoff in windows of time: every matching document
 * from `before` (ISO; null: the cutoff) up to the cutoff is gone.
 */
export interface TimeWalk {
  walks: number;
  before: string | null;
  /** The window's width in milliseconds, as the last batch left it. */
  widthMs?: number;
  /** Whether this walk deleted anything: a walk that did is followed by another. */
  found?: boolean;
  /** A batch, the times [from, below) (from null: everything older), whose delete may or may not have happened. */
  pending?: { from: string | null; below: string; found: number; seq: number };
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
  const seq = w.progress.outcome.batches;
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

/** The first window: an hour. */
const FIRST_WIDTH_MS = 3_600_000;
/** The earliest time a date can hold: a window reaching it holds everything older too. */
const EARLIEST = -8.64e15;
/** A window holding more than this many batches' worth is narrowed before anything is deleted. */
const OVERFULL = 1.5;

/**
 * One window of the walk by time. The server's index on the time field finds a range of times, but
 * (on FerretDB) not in order: a sort, or a limit, costs every document of the range. So a batch is a
 * window of times whose documents are counted first (a cost of the window's own size) and deleted
 * with one deleteMany if they are about a batch; a window that holds too many is narrowed, one that
 * holds none widened, and the next window's width follows from what this one held.
 */
export async function timeStep(w: Walker, t: TimeWalk): Promise<Step> {
  const field = w.r.policy.timeField;
  if (t.crowd) {
    const { at } = t.crowd;
    // The instant as a range, as the windows are: a document whose time is an array of dates matches
    // a range by any one of them (one below its end, another at or after its start), never $eq.
    const instant = { $gte: new Date(at), $lt: new Date(Date.parse(at) + 1) };
    const step = await idStep(w, t.crowd, { ...w.r.where, [field]: instant }, undefined);
    if (step === 'batch') t.found = true;
    if (step !== 'end') return step;
    t.before = at;
    delete t.crowd;
    await w.save();
    return 'again';
  }
  const range = (from: string | null, below: string): Filter<Document> => ({
    ...w.r.where,
    [field]: { ...(from !== null ? { $gte: new Date(from) } : {}), $lt: new Date(below) },
  });
  if (t.pending) {
    const { from, below, found } = t.pending;
    const started = performance.now();
    const { deletedCount } = await w.r.collection.deleteMany(range(from, below));
    const n = Math.max(found, deletedCount);
    addBatch(w, n, n, 0, performance.now() - started);
    t.before = from ?? iso(EARLIEST);
    t.found = true;
    delete t.pending;
    await w.save();
    return 'again';
  }
  const count = (from: string | null, below: string): Promise<number> =>
    w.r.collection.countDocuments(range(from, below), { hint: w.r.timeIndex! });
  /** The window's start; null when it reaches below the earliest date (everything older, then). */
  const startOf = (lo: number) => (lo < EARLIEST ? null : iso(lo));
  const countWindow = (from: string | null, below: string): Promise<number> => {
    const { ahead } = w;
    delete w.ahead;
    return ahead?.from === from && ahead.below === below ? ahead.n : count(from, below);
  };
  const size = w.pace.size;
  const started = performance.now();
  const below = t.before ?? w.s.cutoff.toISOString();
  const hi = Date.parse(below);
  let width = t.widthMs ?? FIRST_WIDTH_MS;
  for (;;) {
    const lo = hi - width;
    const from = startOf(lo);
    const n = await countWindow(from, below);
    if (n === 0) {
      if (from === null) {
        const again = t.found === true;
        return walkAgain(w, t, () => ((t.before = null), (t.found = false)), !again);
      }
      // Nothing there: on to the next window, four times as wide (gaps are crossed in a few steps).
      t.before = from;
      t.widthMs = width * 4;
      return 'again';
    }
    // Below the earliest date JavaScript holds nothing can be narrowed: that window goes whole.
    if (n > size * OVERFULL && hi > EARLIEST) {
      if (width <= 1) {
        t.crowd = { at: iso(hi - 1), walks: 1, after: null };
        t.widthMs = FIRST_WIDTH_MS;
        await w.save();
        return 'again';
      }
      // Within the dates JavaScript can hold: a window reaching past them could not be narrowed.
      width = Math.max(1, Math.min(Math.floor((width * size) / n), hi - EARLIEST));
      continue;
    }
    t.pending = { from, below, found: n, seq: w.progress.outcome.batches };
    await w.save();
    const next = {
      below: from ?? iso(EARLIEST),
      width: Math.max(1, Math.round(width * Math.min(4, Math.max(0.5, size / n)))),
    };
    // The next window is counted while this one is deleted (disjoint ranges): its count, about a
    // third of a batch's time on FerretDB, is then mostly paid already.
    const nextFrom = startOf(Date.parse(next.below) - next.width);
    w.ahead = { from: nextFrom, below: next.below, n: count(nextFrom, next.below) };
    w.ahead.n.catch(() => undefined); // awaited, and so thrown, only if the next step uses it
    const { deletedCount } = await w.r.collection.deleteMany(range(from, below));
    const ms = performance.now() - started;
    // The count only sized the window (it may be older than the delete): what went is what matched.
    addBatch(w, deletedCount, deletedCount, 0, ms);
    t.before = next.below;
    t.found = true;
    t.widthMs = next.width;
    delete t.pending;
    await w.save();
    // The pace sizes batches by documents; a window's cost scaled to a whole batch's.
    if (n >= size / 2) w.pace.took((ms * size) / n, size);
    return 'batch';
  }
}

const iso = (ms: number) => new Date(ms).toISOString();

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
    w.s.log.warn(
      { policy: w.r.policy.name, walks: walk.walks },
      'cleanup stopped walking: documents keep matching',
    );
    return 'end';
  }
  walk.walks++;
  restart();
  await w.save();
  return 'again';
}

function addBatch(w: Walker, matched: number, deleted: number, archived: number, ms: number) {
  const o = w.progress.outcome;
  w.progress.outcome = {
    ...o,
    matched: o.matched + matched,
    deleted: o.deleted + deleted,
    archived: o.archived + archived,
    batches: o.batches + 1,
    longestBatchMs: Math.max(o.longestBatchMs, Math.round(ms)),
  };
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
