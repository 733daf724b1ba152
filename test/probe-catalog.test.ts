/**
 * Probes (branch probe-backup): catalog honesty. Each test states what SHOULD happen; a failing test
 * is a finding.
 */
import { expect } from 'vitest';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { withPostgresTenantLock } from '../src/migrations/tenant-locks.ts';
import { withPoolClient } from '../src/stores/postgres.ts';
import { cliFor } from './support/cli.ts';
import { fillTenant } from './support/backups.ts';
import { eventually, test } from './support/fixtures.ts';

test('F12: a backup deleted as abandoned while its worker still runs is never listed complete', async ({
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
  const job = await client.enqueue('backup', { tenant: tenant.id });
  const result = job.waitForResult({ timeoutMs: 120_000 }).catch((err: Error) => err);
  // The MongoDB collections are stored; the backup now waits for the PostgreSQL lock.
  const row = await eventually(async () => {
    const [r] = await catalog.list(tenant.id);
    return r && (r.objects ?? 0) >= 3 ? r : undefined;
  }, 60_000);
  // 16 minutes without a heartbeat (simulated: the clock, not the wait).
  await deps.control.pool.query(
    `UPDATE dbfleet.backups SET updated_at = now() - interval '16 minutes' WHERE prefix = $1 AND backup_id = $2`,
    [deps.prefix, row.backup_id],
  );
  const cli = cliFor(env);
  const listed = await cli('backups', 'list', '--incomplete');
  expect(listed.stdout).toContain(row.backup_id);
  await cli('backups', 'delete', row.backup_id, '--confirm');
  release();
  await migration;
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
  // Listed complete only when it is restorable.
  expect({ state: final!.state, verify }).not.toMatchObject({
    state: 'complete',
    verify: expect.stringMatching(/object_missing|manifest/),
  });
  expect(final!.state === 'complete').toBe(verify === 'restorable');
});
