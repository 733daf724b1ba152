/**
 * migrate: one tenant's stores in this job, or, for `tenant: 'all'`, one child job per tenant (a
 * BullMQ flow) whose outcomes this job summarises. A failing tenant fails its own child job only.
 */
import type { Result } from '../queues/index.ts';
import { migrateTenant } from '../src/migrations/migrator.ts';
import { storeRows, summarise } from '../src/migrations/result.ts';
import type { Handler } from '../src/runtime/handler.ts';

type MigrateResult = Result<'migrate'>;

export const migrate: Handler<'migrate'> = async (payload, ctx) => {
  const { deps } = ctx;
  if (payload.tenant === 'all') {
    const tenants = (await deps.control.listTenants()).map((t) => t.id);
    const { completed, failed } = await ctx.fanOut(
      'migrate',
      tenants.map((tenant) => ({ key: tenant, payload: { ...payload, tenant } })),
    );
    const rows: MigrateResult['tenants'] = [
      ...completed.flatMap((c) => c.result.tenants),
      ...failed.map((f) => ({
        tenant: f.key,
        store: payload.store,
        status: 'failed' as const,
        error: f.reason,
      })),
    ].sort((a, b) => a.tenant.localeCompare(b.tenant));
    return summarise(payload, rows);
  }
  const outcome = await migrateTenant(
    deps,
    payload.tenant,
    {
      action: payload.action,
      direction: payload.direction,
      to: payload.to,
      dryRun: payload.dryRun,
      store: payload.store,
      jobId: ctx.job.id,
      requestedBy: ctx.requestedBy ?? null,
      signal: ctx.signal,
    },
    ctx.log,
  );
  await ctx.progress({ tenant: payload.tenant, stores: outcome.stores.length });
  return summarise(payload, storeRows(payload.tenant, outcome.stores));
};
