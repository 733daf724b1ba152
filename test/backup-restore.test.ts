/** Backup and restore end to end, through the queues, on the real services. */
import { expect } from 'vitest';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { RestoreRecords } from '../src/backup/restore-records.ts';
import { migrateTenant } from '../src/migrations/migrator.ts';
import { digests, fillTenant, fingerprint } from './support/backups.ts';
import { test } from './support/fixtures.ts';

test('a filled tenant backs up and restores into a new tenant exactly; sequences go on; others untouched', async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant);
  const bystander = await spareTenant();
  await fillTenant(bystander, 50);
  const bystanderBefore = { digests: await digests(bystander), fingerprint: await fingerprint(bystander) };
  startWorker();

  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  // Six tables and four collections, each store's migration history and backfill progress.
  expect(backup).toMatchObject({ tables: 8, collections: 6, keyId: 'test-1' });
  const row = await new BackupCatalog(deps.control.pool, deps.prefix).get(backup.backupId);
  expect(row).toMatchObject({ state: 'complete', tenant: tenant.id, objects: backup.objects });

  const target = await spareTenant({ register: false });
  const progress: unknown[] = [];
  const job = await client.enqueue('restore', {
    tenant: tenant.id,
    backupId: backup.backupId,
    targetTenant: target.id,
  });
  const restored = await job.waitForResult({ timeoutMs: 60_000 });
  expect(restored).toMatchObject({
    backupId: backup.backupId,
    targetTenant: target.id,
    verified: true,
    restoredTables: 8,
    restoredCollections: 6,
    records: backup.records,
    erasuresReapplied: 0,
    replaced: { schema: null, collections: null },
  });
  void progress;

  expect(await digests(target)).toEqual(await digests(tenant));
  expect(await fingerprint(target)).toEqual(await fingerprint(tenant));
  // Sequences go on where they were.
  const next = (t: typeof tenant) =>
    t.pg.withClient(async (c) => {
      const notes = await c.query(`INSERT INTO notes (body) VALUES ('after') RETURNING id`);
      const events = await c.query(`INSERT INTO events DEFAULT VALUES RETURNING id`);
      const invoice = await c.query(`SELECT nextval('invoice_numbers') AS n`);
      return [notes.rows[0].id, events.rows[0].id, invoice.rows[0].n];
    });
  expect(await next(target)).toEqual(await next(tenant));
  // The restored tenant is registered and its migrations are up to date.
  expect((await deps.control.listTenants()).map((t) => t.id)).toContain(target.id);
  const status = await migrateTenant(deps, target.id, {
    action: 'status',
    direction: 'up',
    dryRun: false,
    store: 'both',
    jobId: null,
    requestedBy: 'test',
  });
  for (const s of status.stores) expect(s).toMatchObject({ pending: [] });
  expect(status.stores.map((s) => s.current)).toEqual(['2', '2']);
  expect(await new RestoreRecords(deps.control.pool, deps.prefix).list(target.id)).toMatchObject([
    { state: 'complete', backup_id: backup.backupId, source_tenant: tenant.id, erasures_reapplied: 0 },
  ]);

  expect({ digests: await digests(bystander), fingerprint: await fingerprint(bystander) }).toEqual(
    bystanderBefore,
  );
});
