/**
 * Backup retention applied: the grandfather-father-son plan (retention.ts) over one tenant's catalog,
 * and the deletion of what it does not keep. Only that tenant's rows are read, so one tenant's
 * pruning can never delete another's backups.
 */
import type { ObjectStore } from '../storage/object-store.ts';
import type { BackupCatalog, BackupRow } from './catalog.ts';
import { planRetention, type PlannedBackup, type RetentionRules } from './retention.ts';

/** The plan's rules as a backups retention policy gives them. */
export function rulesOf(policy: {
  keep: Pick<RetentionRules, 'daily' | 'weekly' | 'monthly' | 'yearly'>;
  incompleteGraceHours?: number | undefined;
  timeZone?: string | undefined;
}): RetentionRules {
  return { ...policy.keep, incompleteGraceHours: policy.incompleteGraceHours, timeZone: policy.timeZone };
}

export interface PrunePlan {
  row: BackupRow;
  plan: PlannedBackup;
}

export async function planPrune(
  catalog: BackupCatalog,
  tenant: string,
  rules: RetentionRules,
  now: Date,
): Promise<PrunePlan[]> {
  const rows = (await catalog.list(tenant)).filter((r) => r.tenant === tenant);
  const plans = planRetention(
    rows.map((r) => ({
      backupId: r.backup_id,
      tenant: r.tenant,
      state: r.state,
      startedAt: r.started_at,
      verified: r.verify_result === 'ok',
      ...(r.verify_result && r.verify_result !== 'ok' ? { fault: r.verify_result } : {}),
      lastSeenAt: r.updated_at,
    })),
    rules,
    now,
  );
  return rows.map((row, i) => ({ row, plan: plans[i]! }));
}

/**
 * Deletes a backup: first claimed in the catalog (marked deleted only if its row is still as planned,
 * so a backup a retry took up again meanwhile is left alone, and a deleted one can never complete),
 * then its objects, manifest first. Returns how many objects went, or null if it was not claimed. A
 * crash after the claim leaves objects of a deleted backup: `backups delete <id> --confirm` removes
 * them.
 */
export async function deleteBackup(
  catalog: BackupCatalog,
  store: ObjectStore,
  row: BackupRow,
): Promise<number | null> {
  if (row.state !== 'deleted' && !(await catalog.claimForDeletion(row))) return null;
  const prefix = row.manifest_key.slice(0, -'manifest.json'.length);
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  keys.sort((a, b) => Number(b === row.manifest_key) - Number(a === row.manifest_key));
  for (const key of keys) await store.delete(key);
  return keys.length;
}
