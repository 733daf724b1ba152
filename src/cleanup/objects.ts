/**
 * Retention on objects: everything under the policy's prefix, with `{tenant}` replaced by the job's
 * tenant (a whole path segment, so `tmp/acme/` never reaches `tmp/acme2/`), last written before the
 * cutoff. Deleted in batches of up to 1,000 keys; a batch's keys are checkpointed before they are
 * deleted, so a crash's retry deletes them again (deleting is idempotent) and counts them once.
 */
import type { ObjectStore } from '../storage/object-store.ts';
import { archivePrefix } from './archive.ts';
import { emptyOutcome, timeSpan, type PolicyOutcome, type RunScope } from './outcome.ts';
import type { RetentionPolicy } from './policies.ts';

type ObjectPolicy = Extract<RetentionPolicy, { store: 'objects' }>;

const BATCH = 1_000;
const ROUND = 10 * BATCH;
const PARALLEL = 8;

export interface ObjectProgress {
  outcome: PolicyOutcome;
  pending?: string[];
  done: boolean;
}

export const tenantPrefix = (policy: ObjectPolicy, tenant: string) =>
  policy.prefix.replace('{tenant}', tenant);

async function* oldObjects(store: ObjectStore, prefix: string, cutoff: Date) {
  for await (const o of store.list(prefix))
    if (o.lastModified && o.lastModified.getTime() < cutoff.getTime()) yield o;
}

export async function surveyObjects(
  store: ObjectStore,
  policy: ObjectPolicy,
  s: RunScope,
): Promise<PolicyOutcome> {
  const times: Date[] = [];
  for await (const o of oldObjects(store, tenantPrefix(policy, s.tenant), s.cutoff))
    times.push(o.lastModified!);
  return { ...emptyOutcome(policy.name, 'objects', true), matched: times.length, ...timeSpan(times) };
}

export async function cleanObjects(
  store: ObjectStore,
  policy: ObjectPolicy,
  s: RunScope,
  saved: ObjectProgress | undefined,
  save: (p: ObjectProgress) => Promise<void>,
): Promise<PolicyOutcome> {
  const p: ObjectProgress = saved ?? { outcome: emptyOutcome(policy.name, 'objects', false), done: false };
  const deleteBatch = async (keys: string[]) => {
    const started = performance.now();
    p.pending = keys;
    await save(p);
    for (let i = 0; i < keys.length; i += PARALLEL)
      await Promise.all(keys.slice(i, i + PARALLEL).map((k) => store.delete(k)));
    const ms = Math.round(performance.now() - started);
    p.outcome = {
      ...p.outcome,
      matched: p.outcome.matched + keys.length,
      deleted: p.outcome.deleted + keys.length,
      batches: p.outcome.batches + 1,
      longestBatchMs: Math.max(p.outcome.longestBatchMs, ms),
    };
    delete p.pending;
    await save(p);
    await s.progress(p.outcome);
  };
  if (p.done) return p.outcome;
  if (p.pending) await deleteBatch(p.pending);
  // Listed in rounds, each deleted before the next is listed: some stores (s3rver) fail a listing
  // whose folders are being deleted under it.
  for (;;) {
    const round: string[] = [];
    for await (const o of oldObjects(store, tenantPrefix(policy, s.tenant), s.cutoff)) {
      round.push(o.key);
      if (round.length === ROUND) break;
    }
    for (let i = 0; i < round.length; i += BATCH) {
      s.throwIfInterrupted();
      await deleteBatch(round.slice(i, i + BATCH));
    }
    if (round.length < ROUND) break;
  }
  p.done = true;
  await save(p);
  return p.outcome;
}

/**
 * Cleanup archives of runs older than the cutoff (by their key file, written first): each one whole,
 * its key file first, so that what is left of an interrupted deletion is unreadable at once. Counts
 * archives (one per run and policy), not objects.
 */
export async function cleanArchives(
  store: ObjectStore,
  name: string,
  s: RunScope,
  saved: ObjectProgress | undefined,
  save: (p: ObjectProgress) => Promise<void>,
): Promise<PolicyOutcome> {
  const root = archivePrefix(s.tenant);
  const old: string[] = [];
  const written: Date[] = [];
  for await (const o of store.list(root))
    if (o.key.endsWith('/key.json') && o.lastModified && o.lastModified < s.cutoff) {
      old.push(o.key.slice(0, -'key.json'.length));
      written.push(o.lastModified);
    }
  if (s.dryRun) {
    return { ...emptyOutcome(name, 'archives', true), matched: old.length, ...timeSpan(written) };
  }
  const p: ObjectProgress = saved ?? { outcome: emptyOutcome(name, 'archives', false), done: false };
  if (p.done) return p.outcome;
  const deleteArchive = async (prefix: string) => {
    const started = performance.now();
    p.pending = [prefix];
    await save(p);
    await store.delete(`${prefix}key.json`);
    for await (const o of store.list(prefix)) await store.delete(o.key);
    p.outcome = {
      ...p.outcome,
      matched: p.outcome.matched + 1,
      deleted: p.outcome.deleted + 1,
      batches: p.outcome.batches + 1,
      longestBatchMs: Math.max(p.outcome.longestBatchMs, Math.round(performance.now() - started)),
    };
    delete p.pending;
    await save(p);
    await s.progress(p.outcome);
  };
  if (p.pending) await deleteArchive(p.pending[0]!);
  for (const prefix of old) {
    s.throwIfInterrupted();
    await deleteArchive(prefix);
  }
  p.done = true;
  await save(p);
  return p.outcome;
}
