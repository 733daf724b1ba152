/** A migrate job's result, built the same way by the job handler and by `dbfleet migrate --local`. */
import type { Result } from '../../queues/index.ts';
import type { StoreResult } from '../../queues/migrate.ts';
import type { StoreOutcome } from './run-store.ts';

type MigrateResult = Result<'migrate'>;

export function storeRows(tenant: string, stores: readonly StoreOutcome[]): StoreResult[] {
  return stores.map((s) => ({
    tenant,
    store: s.store,
    status: 'ok',
    current: s.current,
    applied: s.applied,
    reverted: s.reverted,
    pending: s.pending,
    drifted: s.drifted.map(({ file, reason }) => ({ file, reason })),
    repaired: s.repaired,
  }));
}

export function summarise(
  request: { action: MigrateResult['action']; dryRun: boolean },
  rows: MigrateResult['tenants'],
): MigrateResult {
  const failed = new Set(rows.filter((r) => r.status === 'failed').map((r) => r.tenant));
  const all = new Set(rows.map((r) => r.tenant));
  return {
    action: request.action,
    dryRun: request.dryRun,
    tenants: rows,
    summary: { tenants: all.size, ok: all.size - failed.size, failed: failed.size },
  };
}
