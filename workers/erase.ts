/**
 * erase: one data subject's erasure across the tenant's stores, per the personal-data map, recorded
 * in the erasure ledger (src/erase/erase-subject.ts).
 */
import { catalog } from '../queues/index.ts';
import { classifyError } from '../src/errors.ts';
import { eraseSubject } from '../src/erase/erase-subject.ts';
import { ErasureLedger } from '../src/erase/ledger.ts';
import { requireLedgerKeys } from '../src/erase/ledger-keys.ts';
import { tenantLockSettings } from '../src/migrations/tenant-locks.ts';
import type { Handler } from '../src/runtime/handler.ts';

export const erase: Handler<'erase'> = async (payload, ctx) => {
  const { deps } = ctx;
  const ledger = new ErasureLedger(ctx.control.pool, ctx.job.prefix);
  try {
    return await eraseSubject(
      {
        tenant: ctx.tenant,
        subjectId: payload.subject.id,
        runId: ctx.job.runId,
        dryRun: payload.dryRun,
        requestedBy: ctx.requestedBy,
      },
      {
        map: ctx.config.personalData ?? [],
        target: { postgres: ctx.postgres, mongo: ctx.mongo },
        keys: requireLedgerKeys(deps.ledgerKeys),
        ledger,
        checkpoint: ctx.checkpoint,
        progress: (p) => ctx.progress(p),
        throwIfInterrupted: () => ctx.throwIfInterrupted(),
        log: ctx.log,
        locks: tenantLockSettings(deps.env, `erase job ${ctx.job.id}`),
      },
    );
  } catch (err) {
    const c = classifyError(err);
    if (!payload.dryRun && (c.kind === 'permanent' || ctx.job.attempt >= catalog.erase.policy.attempts))
      await ledger.fail(ctx.job.runId, c.code);
    throw err;
  }
};
