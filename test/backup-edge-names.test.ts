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

test("an unsealed manifest in tenant A's folder cannot point restore at tenant B's objects", async ({
  tenant,
  spareTenant,
  client,
  startWorker,
  tmp,
}) => {
  const victim = await spareTenant();
  await fillTenant(victim, 5);
  startWorker();
  // The victim's backup, made without a key (a choice the victim's operator made).
  const theirs = await (
    await client.enqueue('backup', { tenant: victim.id, destination: 'local', encrypt: false })
  ).waitForResult({ timeoutMs: 60_000 });
  // Someone who can write the storage folder puts a manifest for tenant A whose object keys climb
  // into B's backup folder; the seal of an unsealed manifest is a plain SHA-256 anyone can compute.
  const { readFile, writeFile, mkdir } = await import('node:fs/promises');
  const { createHash } = await import('node:crypto');
  const { canonicalJson } = await import('../src/jobs/envelope.ts');
  const path = await import('node:path');
  const m = JSON.parse(
    await readFile(path.join(tmp, 'backups', victim.id, theirs.backupId, 'manifest.json'), 'utf8'),
  );
  const forgedId = '20200101T000000Z-000000000000';
  delete m.seal;
  m.tenant = tenant.id;
  m.backupId = forgedId;
  m.objects = m.objects.map((o: { key: string }) => ({
    ...o,
    key: `../../${victim.id}/${theirs.backupId}/${o.key}`,
  }));
  m.seal = { kind: 'sha256', value: createHash('sha256').update(canonicalJson(m)).digest('hex') };
  const dir = path.join(tmp, 'backups', tenant.id, forgedId);
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, 'manifest.json'), JSON.stringify(m));
  // A's operator restores "A's" backup, accepting an unsealed one.
  const target = await spareTenant({ register: false });
  const outcome = await (
    await client.enqueue('restore', {
      tenant: tenant.id,
      backupId: forgedId,
      targetTenant: target.id,
      source: 'local',
      allowUnencrypted: true,
    })
  )
    .waitForResult({ timeoutMs: 60_000 })
    .then(
      () => 'restored',
      (err: Error) => err.message,
    );
  // Tenant B's rows must not reach tenant A's restore.
  const leaked = await target.pg
    .withClient(async (c) => (await c.query(`SELECT email FROM users`)).rows)
    .catch(() => []);
  expect({ outcome, leaked }).toMatchObject({ leaked: [] });
});
