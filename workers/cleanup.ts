/** cleanup: the tenant's retention policies, in short batches (src/cleanup/run-cleanup.ts). */
import { runCleanup } from '../src/cleanup/run-cleanup.ts';
import type { Handler } from '../src/runtime/handler.ts';

export const cleanup: Handler<'cleanup'> = async (payload, ctx) => ({
  policies: await runCleanup(
    { tenant: ctx.tenant, runId: ctx.job.runId, dryRun: payload.dryRun, only: payload.policies },
    {
      policies: ctx.config.retention ?? [],
      postgres: ctx.postgres,
      mongo: ctx.mongo,
      control: ctx.control.pool,
      prefix: ctx.job.prefix,
      objects: ctx.objects,
      localObjects: ctx.localObjects,
      backupKeys: ctx.deps.backupKeys,
      lockWaitMs: ctx.deps.env.DBFLEET_MIGRATE_LOCK_WAIT_MS,
      checkpoint: ctx.checkpoint,
      signal: ctx.signal,
      throwIfInterrupted: () => ctx.throwIfInterrupted(),
      log: ctx.log,
      progress: (p) => ctx.progress(p),
    },
  ),
});
