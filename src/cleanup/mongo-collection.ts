/**
 * Retention on a MongoDB collection: documents whose time field is a date older than the cutoff (and
 * that match the policy's `where`) are deleted in batches walked by `_id`, each sized toward a target
 * duration. Without transactions (FerretDB has none) a batch cannot commit with its checkpoint, so the
 * checkpoint is written before the delete, naming the batch (its `_id` range and how many it found);
 * a retry that finds the batch pending deletes the range again and counts the larger of what it found
 * and what it deletes, which is exact unless something else deletes the same documents meanwhile.
 *
 * Only dates match: a time held as a string or a number is not a date to MongoDB (the same rule as TTL
 * indexes). `_id`s of different BSON types sort apart; the walk ends with one look at the whole
 * collection and starts over if documents of another `_id` type are left.
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

/** Walks of the whole collection after the first, for `_id`s of other types or documents made old meanwhile. */
const MAX_WALKS = 3;

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
  /** A batch whose delete may or may not have happened. */
  pending?: { upTo: string; found: number; seq: number };
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
  const idRange = (after: string | null, upTo?: string): Filter<Document> => {
    const range: Document = {};
    if (after !== null) range.$gt = parseId(after);
    if (upTo !== undefined) range.$lte = parseId(upTo);
    return Object.keys(range).length ? { _id: range } : {};
  };
  for (;;) {
    s.throwIfInterrupted();
    if (p.pending) {
      // The batch a crash interrupted: delete its range again, archiving what is still there.
      const { upTo, found, seq } = p.pending;
      const started = performance.now();
      const filter = { ...match, ...idRange(p.after, upTo) };
      let archived = 0;
      if (archive) {
        const docs = await r.collection.find(filter).toArray();
        archived = await archiveBatch(archive, seq, docs, true);
      }
      const { deletedCount } = await r.collection.deleteMany(filter);
      finishBatch(p, upTo, found, Math.max(found, deletedCount), archived, performance.now() - started);
      await save(p);
      continue;
    }
    const size = batchPace.size;
    const started = performance.now();
    const docs = await r.collection
      .find({ ...match, ...idRange(p.after) }, archive ? {} : { projection: { _id: 1 } })
      .sort({ _id: 1 })
      .limit(size)
      .toArray();
    if (docs.length === 0) {
      // The walk's end: anything left (`_id`s of another type, documents made old since) starts another.
      const left = p.after !== null && (await r.collection.findOne(match, { projection: { _id: 1 } }));
      if (left && p.walks < MAX_WALKS) {
        p.walks++;
        p.after = null;
        await save(p);
        continue;
      }
      p.done = true;
      await save(p);
      return p.outcome;
    }
    const upTo = EJSON.stringify({ id: docs.at(-1)!._id }, { relaxed: false });
    const seq = p.outcome.batches;
    p.pending = { upTo, found: docs.length, seq };
    await save(p);
    const archived = archive ? await archiveBatch(archive, seq, docs, false) : 0;
    const { deletedCount } = await r.collection.deleteMany({ ...match, ...idRange(p.after, upTo) });
    const ms = performance.now() - started;
    finishBatch(p, upTo, docs.length, Math.max(docs.length, deletedCount), archived, ms);
    await save(p);
    await s.progress(p.outcome);
    batchPace.took(ms, docs.length);
    await rest(batchPace.pauseMs, s.signal);
  }
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
