/**
 * The catalog tells the truth: a backup deleted as abandoned while its worker still runs is never
 * listed complete (found by probing as a hostile user).
 */
import { expect } from 'vitest';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { withPostgresTenantLock } from '../src/migrations/tenant-locks.ts';
import { withPoolClient } from '../src/stores/postgres.ts';
import { cliFor } from './support/cli.ts';
import { fillTenant } from './support/backups.ts';
import { eventually, test } from './support/fixtures.ts';

test('a backup deleted as abandoned while its worker still runs is never listed complete', async ({
  deps,
  env,
  tenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 50);
  startWorker();
  const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
  const pool = deps.postgres.pool(deps.tenants.locate(tenant.id).postgresUrl);
  // Something holds the tenant's PostgreSQL lock for a while (a migration; or, equally, one very large
  // table taking longer than 15 minutes to read: the heartbeat only moves between objects).
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const migration = withPoolClient(pool, (c) =>
    withPostgresTenantLock(c, tenant.pg.schema, 'exclusive', 5_000, async () => {
      locked();
      await held;
    }),
  );
  await isLocked;
  let result!: Promise<unknown>;
  let row!: Awaited<ReturnType<BackupCatalog['get']>> & object;
  try {
    const job = await client.enqueue('backup', { tenant: tenant.id });
    result = job.waitForResult({ timeoutMs: 120_000 }).catch((err: Error) => err);
    // The MongoDB collections are stored; the backup now waits for the PostgreSQL lock.
    await eventually(async () => {
      const { rowCount } = await deps.control.pool.query(
        `SELECT 1 FROM pg_stat_activity WHERE wait_event = 'advisory' AND query LIKE '%pg_advisory_lock_shared%'`,
      );
      return rowCount! > 0;
    }, 60_000);
    [row] = (await catalog.list(tenant.id)) as [typeof row];
    // 16 minutes without a heartbeat (simulated: the clock, not the wait).
    await deps.control.pool.query(
      `UPDATE dbfleet.backups SET updated_at = now() - interval '16 minutes' WHERE prefix = $1 AND backup_id = $2`,
      [deps.prefix, row.backup_id],
    );
    const cli = cliFor(env);
    const listed = await cli('backups', 'list', '--incomplete').catch((e: { stderr?: string }) => {
      throw new Error(`list: ${e.stderr}`);
    });
    expect(listed.stdout).toContain(row.backup_id);
    await cli('backups', 'delete', row.backup_id, '--confirm').catch((e: { stderr?: string }) => {
      throw new Error(`delete: ${e.stderr}`);
    });
  } finally {
    release();
    await migration;
  }
  await result;

  const final = await catalog.get(row.backup_id);
  const verify = await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: row.backup_id, verifyOnly: true })
  )
    .waitForResult({ timeoutMs: 60_000 })
    .then(
      () => 'restorable',
      (err: Error) => err.message,
    );
  // Listed complete only when it is restorable (here: state complete, verify fails object_missing).
  expect(`${final!.state}: ${verify}`).not.toMatch(/^complete: (?!restorable)/);
});
