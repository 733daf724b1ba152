/**
 * Names that reach paths and object names, and catalog rows another tenant's restore could write:
 * found by probing backup and restore as a hostile user.
 */
import { expect } from 'vitest';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { fillTenant } from './support/backups.ts';
import { test } from './support/fixtures.ts';

test('collections "b" and "a/b" both come back, each with its own documents', async ({
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  await tenant.mongo.collection('b').insertMany([{ _id: 1, k: 'plain b' } as never]);
  await tenant.mongo
    .collection('a/b')
    .insertMany([{ _id: 1, k: 'slash 1' } as never, { _id: 2, k: 'slash 2' } as never]);
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id, stores: ['mongo'] })
  ).waitForResult({ timeoutMs: 60_000 });
  const target = await spareTenant({ register: false });
  const restored = await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId, targetTenant: target.id })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(restored.restoredCollections).toBe(backup.collections);
  const names = (await target.mongo.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name);
  expect(await target.mongo.collection('b').find().toArray()).toEqual([{ _id: 1, k: 'plain b' }]);
  expect(names).toContain('a/b');
  expect(await target.mongo.collection('a/b').countDocuments()).toBe(2);
});

test("a tenant's collection name cannot make its backup write into another tenant's backup", async ({
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  const victim = await spareTenant();
  await fillTenant(victim, 20);
  startWorker();
  const victimBackup = await (
    await client.enqueue('backup', { tenant: victim.id, destination: 'local' })
  ).waitForResult({ timeoutMs: 60_000 });
  // Verified whole: restorable.
  await (
    await client.enqueue('restore', { tenant: victim.id, backupId: victimBackup.backupId, verifyOnly: true })
  ).waitForResult({ timeoutMs: 60_000 });

  // The attacker tenant names a collection so that its object path climbs into the victim's backup.
  const evil = `x/../../../../../${victim.id}/${victimBackup.backupId}/mongo/collections/sessions`;
  await tenant.mongo.collection(evil).insertOne({ junk: true });
  const attackerBackup = client.enqueue('backup', { tenant: tenant.id, destination: 'local' });
  // Whatever happens to the attacker's backup...
  await (await attackerBackup).waitForResult({ timeoutMs: 60_000 }).catch(() => undefined);

  // ...the victim's backup must still verify.
  const check = await client.enqueue('restore', {
    tenant: victim.id,
    backupId: victimBackup.backupId,
    verifyOnly: true,
  });
  await expect(check.waitForResult({ timeoutMs: 60_000 })).resolves.toMatchObject({ verified: true });
});

test("a restore job for tenant B cannot rewrite the catalog's verify result of tenant A's backup", async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 10);
  const other = await spareTenant();
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
  await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId, verifyOnly: true })
  ).waitForResult({ timeoutMs: 60_000 });
  expect((await catalog.get(backup.backupId))!.verify_result).toBe('ok');
  // A job naming another tenant and A's backup id: there is no such backup of that tenant.
  const job = await client.enqueue('restore', {
    tenant: other.id,
    backupId: backup.backupId,
    verifyOnly: true,
  });
  await expect(job.waitForResult({ timeoutMs: 60_000 })).rejects.toThrow(/manifest_missing/);
  // A's backup is fine, and its catalog row must still say so.
  expect((await catalog.get(backup.backupId))!.verify_result).toBe('ok');
});
