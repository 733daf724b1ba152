/**
 * A cleanup run: the tenant's retention policies (all, or those named), one after another in config
 * order. Every table and collection is checked against the tenant's catalog before anything is
 * deleted, so a policy naming something missing fails the job with nothing changed. The run's start
 * time is checkpointed at its first attempt: each policy's cutoff is fixed from it, and a retry
 * deletes the same set.
 */
import type { Db } from 'mongodb';
import type pg from 'pg';
import { PermanentError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { KeyProvider } from '../backup/keys.ts';
import { expiredExports, pruneBackups } from './catalog-policies.ts';
import type { Checkpoint } from '../runtime/checkpoint.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { TenantPostgres } from '../stores/postgres.ts';
import { BatchArchive } from './archive.ts';
import { cleanRecords, surveyRecords } from './control-records.ts';
import {
  cleanCollection,
  resolveCollection,
  surveyCollection,
  type MongoProgress,
} from './mongo-collection.ts';
import { cleanArchives, cleanObjects, surveyObjects, type ObjectProgress } from './objects.ts';
import type { PolicyOutcome, RunScope } from './outcome.ts';
import { retentionPolicy, type RetentionPolicy } from './policies.ts';
import { cleanTable, resolveTable, surveyTable } from './postgres-table.ts';

const DAY_MS = 86_400_000;

export interface CleanupRequest {
  tenant: string;
  runId: string;
  dryRun: boolean;
  /** Names of the policies to apply; all when absent. */
  only?: readonly string[] | undefined;
}

export interface CleanupDeps {
  policies: readonly RetentionPolicy[];
  postgres: TenantPostgres;
  mongo: Db;
  control: pg.Pool;
  prefix: string;
  objects: ObjectStore;
  localObjects: ObjectStore;
  backupKeys: KeyProvider | undefined;
  /** How long a table's cleanup waits for a migration of the tenant to finish before retrying later. */
  lockWaitMs: number;
  checkpoint: Checkpoint;
  signal: AbortSignal;
  throwIfInterrupted(): void;
  log: Logger;
  progress(value: object): Promise<void>;
}

interface CleanupCheckpoint {
  startedAt: string;
  /** Policies finished, with their outcomes. */
  done: PolicyOutcome[];
  mongo: Record<string, MongoProgress>;
  objects: Record<string, ObjectProgress>;
  /** Exports and backups deleted so far, by policy: a retry's counts include them. */
  deletedIds?: Record<string, string[]>;
}

/** The policies a request names, in config order; an unknown name is bad input. */
export function selectPolicies(
  policies: readonly RetentionPolicy[],
  only?: readonly string[],
): RetentionPolicy[] {
  if (!only) return [...policies];
  const unknown = only.filter((n) => !policies.some((p) => p.name === n));
  if (unknown.length)
    throw new PermanentError(
      'unknown_policy',
      `no retention policy named ${unknown.join(', ')} in the config module`,
    );
  return policies.filter((p) => only.includes(p.name));
}

export async function runCleanup(req: CleanupRequest, d: CleanupDeps): Promise<PolicyOutcome[]> {
  const policies = selectPolicies(d.policies, req.only).map((p) => retentionPolicy.parse(p));
  if (
    policies.some((p) => (p.store === 'postgres' || p.store === 'mongo') && p.archive && !req.dryRun) &&
    !d.backupKeys
  )
    throw new PermanentError(
      'no_backup_keys',
      'a policy archives before deleting: no backup master key is configured (DBFLEET_BACKUP_KEYS)',
    );
  // Everything checked before anything is deleted.
  const tables = new Map<string, Awaited<ReturnType<typeof resolveTable>>>();
  const collections = new Map<string, Awaited<ReturnType<typeof resolveCollection>>>();
  for (const p of policies) {
    if (p.store === 'postgres') tables.set(p.name, await resolveTable(d.postgres, p));
    if (p.store === 'mongo') collections.set(p.name, await resolveCollection(d.mongo, p));
  }
  const cp: CleanupCheckpoint = (await d.checkpoint.get<CleanupCheckpoint>()) ?? {
    startedAt: new Date().toISOString(),
    done: [],
    mongo: {},
    objects: {},
  };
  await d.checkpoint.set(cp);
  const startedAt = new Date(cp.startedAt);
  const outcomes: PolicyOutcome[] = [];
  let lastProgress = 0;
  for (const p of policies) {
    const finished = cp.done.find((o) => o.name === p.name);
    if (finished) {
      outcomes.push(finished);
      continue;
    }
    d.throwIfInterrupted();
    const days = 'olderThanDays' in p ? p.olderThanDays : 0;
    const s: RunScope = {
      tenant: req.tenant,
      runId: req.runId,
      dryRun: req.dryRun,
      cutoff: new Date(startedAt.getTime() - days * DAY_MS),
      signal: d.signal,
      throwIfInterrupted: d.throwIfInterrupted,
      log: d.log.child({ policy: p.name }),
      progress: async (o) => {
        if (Date.now() - lastProgress < 1_000) return;
        lastProgress = Date.now();
        await d.progress({
          policy: o.name,
          deleted: o.deleted,
          batches: o.batches,
          finished: outcomes.length,
        });
      },
    };
    const saveIn =
      <K extends 'mongo' | 'objects'>(kind: K) =>
      async (progress: CleanupCheckpoint[K][string]) => {
        (cp[kind] as Record<string, unknown>)[p.name] = progress;
        await d.checkpoint.set(cp);
      };
    let outcome: PolicyOutcome;
    switch (p.store) {
      case 'postgres': {
        const r = tables.get(p.name)!;
        outcome = req.dryRun
          ? await surveyTable(d.postgres, r, s)
          : await cleanTable(
              d.postgres,
              r,
              s,
              p.archive ? await openArchive(d, req, p) : undefined,
              d.lockWaitMs,
            );
        break;
      }
      case 'mongo': {
        const r = collections.get(p.name)!;
        outcome = req.dryRun
          ? await surveyCollection(r, s)
          : await cleanCollection(
              r,
              s,
              p.archive ? await openArchive(d, req, p) : undefined,
              cp.mongo[p.name],
              saveIn('mongo'),
            );
        break;
      }
      case 'objects':
        outcome = req.dryRun
          ? await surveyObjects(d.objects, p, s)
          : await cleanObjects(d.objects, p, s, cp.objects[p.name], saveIn('objects'));
        break;
      case 'archives':
        outcome = await cleanArchives(d.objects, p.name, s, cp.objects[p.name], saveIn('objects'));
        break;
      case 'control':
        outcome = req.dryRun
          ? await surveyRecords(d.control, d.prefix, p, s)
          : await cleanRecords(d.control, d.prefix, p, s);
        break;
      case 'exports':
      case 'backups': {
        const ids = (cp.deletedIds ??= {})[p.name] ?? [];
        const record = async (id: string) => {
          ids.push(id);
          cp.deletedIds![p.name] = ids;
          await d.checkpoint.set(cp);
        };
        const c = {
          ...d,
          tenant: req.tenant,
          dryRun: req.dryRun,
          now: startedAt,
          deletedBefore: ids,
          record,
        };
        outcome = p.store === 'exports' ? await expiredExports(c, p.name) : await pruneBackups(c, p);
        break;
      }
    }
    if ('olderThanDays' in p) outcome = { ...outcome, cutoff: s.cutoff.toISOString() };
    outcomes.push(outcome);
    cp.done.push(outcome);
    await d.checkpoint.set(cp);
    s.log.info({ ...outcome }, req.dryRun ? 'retention policy surveyed' : 'retention policy applied');
  }
  return outcomes;
}

function openArchive(
  d: CleanupDeps,
  req: CleanupRequest,
  p: Extract<RetentionPolicy, { store: 'postgres' | 'mongo' }>,
) {
  return BatchArchive.open({
    objects: d.objects,
    keys: d.backupKeys,
    tenant: req.tenant,
    runId: req.runId,
    policy: p.name,
    store: p.store,
    target: p.target,
  });
}
