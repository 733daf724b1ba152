/**
 * Retention on a MongoDB collection: documents whose time field is a date older than the cutoff (and
 * that match the policy's `where`) are deleted in batches, each sized toward a target duration.
 *
 * Two walks, chosen when a run starts and kept through its retries:
 * - **by time**, where the time field leads an index (as a TTL index needs) and nothing is archived:
 *   down from the cutoff, each batch a window of times counted through that index and deleted with
 *   one `deleteMany` on the same window; an instant holding more than a batch is walked by `_id`
 *   among its documents.
 * - **by `_id`** otherwise: each batch the next documents in `_id` order, deleted one by one by `_id`
 *   (exactly the documents read, and archived, if they still match).
 *
 * Only dates match: a time held as a string or a number is not a date to MongoDB (the same rule as TTL
 * indexes). Without transactions (FerretDB has none) a batch cannot commit with its checkpoint, so the
 * checkpoint is written before the delete, naming the batch (its range and how many it found); a retry
 * that finds a batch pending deletes what of its range still matches and counts the larger of what it
 * found and what it deletes, which is exact unless something else deletes the same documents meanwhile.
 * A walk that reaches its end starts over until it finds nothing: documents made old meanwhile behind
 * its position, and (by `_id`) documents whose `_id` is of another BSON type, are found that way.
 */
import type { Collection, Db, Document, Filter, IndexDescription } from 'mongodb';
import { PermanentError } from '../errors.ts';
import { collectionExists } from '../stores/mongo.ts';
import type { BatchArchive } from './archive.ts';
import { idStep, timeStep, type IdWalk, type TimeWalk, type Walker } from './mongo-walks.ts';
import { emptyOutcome, type PolicyOutcome, type RunScope } from './outcome.ts';
import { pace, rest } from './pace.ts';
import type { DataPolicy } from './policies.ts';

type MongoPolicy = DataPolicy & { store: 'mongo' };

export interface ResolvedCollection {
  policy: MongoPolicy;
  collection: Collection;
  /** The match, without the time bound (set per run). */
  where: Filter<Document>;
  /** An index led by the time field, by name: the walk by time goes through it. */
  timeIndex: string | undefined;
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
  const collection = db.collection(policy.target);
  const indexes = (await collection.listIndexes().toArray()) as IndexDescription[];
  return { policy, collection, where, timeIndex: indexes.find((i) => leadsWith(i, policy.timeField))?.name };
}

/** An ordinary ascending or descending index whose first key is the field, holding every document. */
function leadsWith(index: IndexDescription & { hidden?: boolean }, field: string): boolean {
  const [first] = Object.entries(index.key);
  return (
    first?.[0] === field &&
    (first[1] === 1 || first[1] === -1) &&
    !index.partialFilterExpression &&
    !index.hidden &&
    !!index.name
  );
}

const matchOf = (r: ResolvedCollection, cutoff: Date): Filter<Document> => ({
  ...r.where,
  [r.policy.timeField]: { $lt: cutoff },
});

export async function surveyCollection(r: ResolvedCollection, s: RunScope): Promise<PolicyOutcome> {
  const field = `$${r.policy.timeField}`;
  // A time held as an array of dates is its earliest (as a TTL index reads it).
  const time = { $cond: [{ $isArray: field }, { $min: field }, field] };
  const [row] = await r.collection
    .aggregate<{ n: number; oldest: unknown; newest: unknown }>([
      { $match: matchOf(r, s.cutoff) },
      { $group: { _id: null, n: { $sum: 1 }, oldest: { $min: time }, newest: { $max: time } } },
    ])
    .toArray();
  return {
    ...emptyOutcome(r.policy.name, 'mongo', true),
    matched: row?.n ?? 0,
    oldest: dateText(row?.oldest),
    newest: dateText(row?.newest),
  };
}

/** A BSON date as ISO text; null for anything else, or a date beyond what JavaScript holds. */
const dateText = (value: unknown): string | null =>
  value instanceof Date && !Number.isNaN(value.getTime()) ? value.toISOString() : null;

/**
 * Where a policy's walk stands, in the run's checkpoint. The walk by `_id` keeps its fields at the
 * top level (as checkpoints written before the walk by time have them); `byTime` marks the other.
 */
export interface MongoProgress extends IdWalk {
  outcome: PolicyOutcome;
  done: boolean;
  byTime?: TimeWalk;
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
    ...(r.timeIndex && !archive ? { byTime: { walks: 1, before: null } } : {}),
  };
  if (p.done) return p.outcome;
  if (!saved)
    s.log.info(
      { policy: r.policy.name, walk: p.byTime ? 'time' : '_id' },
      p.byTime ? 'cleanup walks the time index' : 'cleanup walks _id',
    );
  const w: Walker = {
    r,
    s,
    pace: pace(r.policy.batch),
    match: matchOf(r, s.cutoff),
    progress: p,
    save: () => save(p),
  };
  for (;;) {
    s.throwIfInterrupted();
    const step = p.byTime ? await timeStep(w, p.byTime) : await idStep(w, p, w.match, archive);
    if (step === 'end') {
      p.done = true;
      await save(p);
      return p.outcome;
    }
    if (step === 'batch') {
      await s.progress(p.outcome);
      await rest(w.pace.pauseMs, s.signal);
    }
  }
}
