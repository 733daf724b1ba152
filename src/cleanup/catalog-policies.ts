/**
 * Policies over what the control database catalogs: subject exports past their expiry, and backups
 * thinned grandfather-father-son. Each item deleted is recorded in the run's checkpoint as it goes, so
 * a retried run's counts include what an earlier attempt deleted.
 */
import type pg from 'pg';
import { BackupCatalog } from '../backup/catalog.ts';
import { deleteBackup, planPrune, rulesOf } from '../backup/prune.ts';
import { deleteExport } from '../erase/export-expire.ts';
import { ExportRecords } from '../erase/export-records.ts';
import type { Logger } from '../logger.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { timeSpan, type PolicyOutcome } from './outcome.ts';
import type { RetentionPolicy } from './policies.ts';

export interface CatalogScope {
  control: pg.Pool;
  prefix: string;
  objects: ObjectStore;
  localObjects: ObjectStore;
  log: Logger;
  tenant: string;
  dryRun: boolean;
  /** The run's start: what is past it is past. */
  now: Date;
  /** Ids an earlier attempt of the run deleted. */
  deletedBefore: readonly string[];
  /** Records one more deleted id in the run's checkpoint. */
  record(id: string): Promise<void>;
  throwIfInterrupted(): void;
}

const storeOf = (c: CatalogScope, destination: 's3' | 'local') =>
  destination === 'local' ? c.localObjects : c.objects;

export async function expiredExports(c: CatalogScope, name: string): Promise<PolicyOutcome> {
  const records = new ExportRecords(c.control, c.prefix);
  const rows = await records.expired(c.now, c.tenant);
  const outcome: PolicyOutcome = {
    name,
    store: 'exports',
    dryRun: c.dryRun,
    matched: c.deletedBefore.length + rows.length,
    deleted: c.deletedBefore.length,
    archived: 0,
    batches: 0,
    longestBatchMs: 0,
  };
  if (c.dryRun) return { ...outcome, ...timeSpan(rows.map((r) => r.expires_at)) };
  for (const row of rows) {
    c.throwIfInterrupted();
    const started = performance.now();
    try {
      await deleteExport(storeOf(c, row.destination), row);
    } catch (err) {
      // One bundle out of reach must not keep the others alive; the next run tries it again.
      c.log.warn({ err, exportId: row.export_id }, 'could not delete an expired subject export');
      continue;
    }
    await records.markDeleted(row.export_id);
    await c.record(row.export_id);
    outcome.deleted++;
    outcome.batches++;
    outcome.longestBatchMs = Math.max(outcome.longestBatchMs, Math.round(performance.now() - started));
  }
  return outcome;
}

export async function pruneBackups(
  c: CatalogScope,
  p: Extract<RetentionPolicy, { store: 'backups' }>,
): Promise<PolicyOutcome> {
  const catalog = new BackupCatalog(c.control, c.prefix);
  const plan = (await planPrune(catalog, c.tenant, rulesOf(p), c.now)).filter(
    (x) => x.row.state !== 'deleted',
  );
  const doomed = plan.filter((x) => !x.plan.keep);
  const outcome: PolicyOutcome = {
    name: p.name,
    store: 'backups',
    dryRun: c.dryRun,
    matched: c.deletedBefore.length + doomed.length,
    deleted: c.deletedBefore.length,
    archived: 0,
    batches: 0,
    longestBatchMs: 0,
    kept: plan.length - doomed.length,
  };
  if (c.dryRun) return { ...outcome, ...timeSpan(doomed.map((x) => x.row.started_at)) };
  for (const { row } of doomed) {
    c.throwIfInterrupted();
    const started = performance.now();
    if ((await deleteBackup(catalog, storeOf(c, row.destination), row)) === null) {
      // A retry took it up again after the plan was made: it stays.
      outcome.matched--;
      outcome.kept!++;
      continue;
    }
    await c.record(row.backup_id);
    outcome.deleted++;
    outcome.batches++;
    outcome.longestBatchMs = Math.max(outcome.longestBatchMs, Math.round(performance.now() - started));
  }
  return outcome;
}
