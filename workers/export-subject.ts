/**
 * export-subject: one data subject's data, per the personal-data map, as a sealed bundle with an
 * expiring link (src/erase/export-subject.ts). Each job first sweeps its tenant's expired exports
 * (src/erase/export-expire.ts).
 */
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import path from 'node:path';
import { ExportRecords } from '../src/erase/export-records.ts';
import { expireExports } from '../src/erase/export-expire.ts';
import { exportSubject as runExport } from '../src/erase/export-subject.ts';
import { requireLedgerKeys } from '../src/erase/ledger-keys.ts';
import { tenantLockSettings } from '../src/migrations/tenant-locks.ts';
import type { Handler } from '../src/runtime/handler.ts';

export const exportSubject: Handler<'export-subject'> = async (payload, ctx) => {
  const { deps } = ctx;
  const { env } = deps;
  const ledgerKeys = requireLedgerKeys(deps.ledgerKeys);
  try {
    // The job's own tenant only: a tenant's job reaches that tenant's objects (`exports expire` sweeps all).
    await expireExports(deps, { tenant: ctx.tenant });
  } catch (err) {
    // Someone's access request is not held up by the sweep; the next job or `exports expire` retries it.
    ctx.log.warn({ err }, 'could not sweep expired subject exports');
  }
  const local = payload.destination === 'local';
  return runExport(
    {
      tenant: ctx.tenant,
      subjectId: payload.subject.id,
      runId: ctx.job.runId,
      destination: payload.destination,
      expiresInSeconds: payload.expiresInSeconds,
      requestedBy: ctx.requestedBy,
    },
    {
      map: ctx.config.personalData ?? [],
      target: { postgres: ctx.postgres, mongo: ctx.mongo },
      store: local ? ctx.localObjects : ctx.objects,
      ledgerKeys,
      backupKeys: deps.backupKeys,
      records: new ExportRecords(ctx.control.pool, ctx.job.prefix),
      checkpoint: ctx.checkpoint,
      // The local store resolves keys against this folder the same way.
      link: async (key, seconds) =>
        local
          ? path.resolve(env.DBFLEET_LOCAL_STORAGE_DIR, key)
          : getSignedUrl(ctx.s3, new GetObjectCommand({ Bucket: env.DBFLEET_S3_BUCKET, Key: key }), {
              expiresIn: seconds,
            }),
      progress: (p) => ctx.progress(p),
      throwIfInterrupted: () => ctx.throwIfInterrupted(),
      log: ctx.log,
      locks: tenantLockSettings(env, `export-subject job ${ctx.job.id}`),
      partSizeBytes: env.DBFLEET_BACKUP_PART_SIZE_MB * 1024 * 1024,
    },
  );
};
