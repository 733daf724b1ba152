/**
 * restore: a backup into its own tenant or another, verified whole first, built beside the live data
 * and swapped in only when complete (src/backup/restore-tenant.ts).
 */
import { catalog } from '../queues/index.ts';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { RestoreRecords } from '../src/backup/restore-records.ts';
import { dropStaging, restoreTenant } from '../src/backup/restore-tenant.ts';
import { classifyError } from '../src/errors.ts';
import { ErasureLedger } from '../src/erase/ledger.ts';
import { reapplyErasures } from '../src/erase/reapply.ts';
import { tenantLockSettings } from '../src/migrations/tenant-locks.ts';
import type { Handler } from '../src/runtime/handler.ts';

export const restore: Handler<'restore'> = async (payload, ctx) => {
  const { deps } = ctx;
  const backups = new BackupCatalog(ctx.control.pool, ctx.job.prefix);
  const records = new RestoreRecords(ctx.control.pool, ctx.job.prefix);
  const targetTenant = payload.targetTenant ?? payload.tenant;
  const at = deps.tenants.locate(targetTenant);
  const target = {
    pool: deps.postgres.pool(at.postgresUrl),
    schema: at.namespace,
    mongo: deps.mongo.db(at.mongoUrl, at.namespace),
  };
  const source = payload.source ?? (await backups.get(payload.backupId))?.destination ?? 's3';
  try {
    return await restoreTenant(
      {
        backupId: payload.backupId,
        source: payload.tenant,
        target: targetTenant,
        runId: ctx.job.runId,
        replace: payload.replace,
        allowUnencrypted: payload.allowUnencrypted,
        verifyOnly: payload.verifyOnly,
      },
      {
        store: source === 'local' ? ctx.localObjects : ctx.objects,
        keys: deps.backupKeys,
        target,
        records,
        catalog: backups,
        checkpoint: ctx.checkpoint,
        progress: (p) => ctx.progress(p),
        signal: ctx.signal,
        log: ctx.log,
        locks: tenantLockSettings(deps.env, `restore job ${ctx.job.id}`),
        parallel: deps.env.DBFLEET_BACKUP_PARALLEL,
        reapplyErasures: (staged, backup) =>
          reapplyErasures(
            {
              ledger: new ErasureLedger(ctx.control.pool, ctx.job.prefix),
              keys: deps.ledgerKeys,
              map: ctx.config.personalData ?? [],
              tenant: payload.tenant,
              log: ctx.log,
            },
            staged,
            backup,
          ),
        register: async () => void (await deps.control.addTenant(targetTenant)),
      },
    );
  } catch (err) {
    // A restore that will not be retried leaves the target as it was: what it staged goes.
    const c = classifyError(err);
    if (c.kind === 'permanent' || ctx.job.attempt >= catalog.restore.policy.attempts) {
      if (!payload.verifyOnly) {
        await dropStaging(target, ctx.job.runId).catch((dropErr: unknown) =>
          ctx.log.error({ err: dropErr }, 'could not drop the failed restore staging data'),
        );
        await records.fail(ctx.job.runId, c.code);
      }
    }
    throw err;
  }
};
