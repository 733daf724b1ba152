/** backup: one tenant's stores to S3 or the local folder, sealed, with a manifest written last. */
import { backupTenant } from '../src/backup/backup-tenant.ts';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { catalog } from '../queues/index.ts';
import { classifyError } from '../src/errors.ts';
import { tenantLockSettings } from '../src/migrations/tenant-locks.ts';
import type { Handler } from '../src/runtime/handler.ts';

export const backup: Handler<'backup'> = async (payload, ctx) => {
  const { env } = ctx.deps;
  const backups = new BackupCatalog(ctx.control.pool, ctx.job.prefix);
  const finalAttempt = ctx.job.attempt >= catalog.backup.policy.attempts;
  try {
    return await backupTenant(
      { ...payload, runId: ctx.job.runId },
      {
        postgres: ctx.postgres,
        mongo: ctx.mongo,
        objects: payload.destination === 'local' ? ctx.localObjects : ctx.objects,
        destination: payload.destination,
        keys: ctx.deps.backupKeys,
        catalog: backups,
        checkpoint: ctx.checkpoint,
        progress: (p) => ctx.progress(p),
        signal: ctx.signal,
        log: ctx.log,
        locks: tenantLockSettings(env, `backup job ${ctx.job.id}`),
        partSizeBytes: env.DBFLEET_BACKUP_PART_SIZE_MB * 1024 * 1024,
        parallel: env.DBFLEET_BACKUP_PARALLEL,
      },
    );
  } catch (err) {
    // A backup that will not be retried is marked failed; one that will stays running (its retry
    // goes on under the same backup id).
    const c = classifyError(err);
    if (c.kind === 'permanent' || finalAttempt) {
      const cp = await ctx.checkpoint.get<{ backupId?: string }>();
      if (cp?.backupId) await backups.fail(cp.backupId, c.code);
    }
    throw err;
  }
};
