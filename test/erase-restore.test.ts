/** Restores keep erased people erased: the ledger is applied to restored data before it is opened. */
import { expect } from 'vitest';
import { erased, fillDemo, snapshot } from './support/erasure.ts';
import { test } from './support/fixtures.ts';

test('backup, erase, restore that backup into the same tenant and into another: the subject stays erased', async ({
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  const ids = await fillDemo(tenant, 20);
  const subject = String(ids[4]);
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  const erasure = await erased(client, tenant.id, subject);
  expect(erasure).toMatchObject({ verified: true, deleted: 13, anonymised: 6 });
  const afterErase = await snapshot(tenant);

  // Into the same tenant: the backup still holds the subject; the restored tenant does not.
  const same = await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(same).toMatchObject({ verified: true, erasuresReapplied: 1 });
  // Exactly as the erasure left it: the same rows gone, the same pseudonyms written.
  expect(await snapshot(tenant)).toEqual(afterErase);

  // Into another tenant: the source tenant's erasures apply there too.
  const other = await spareTenant({ register: false });
  const elsewhere = await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId, targetTenant: other.id })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(elsewhere).toMatchObject({ targetTenant: other.id, erasuresReapplied: 1 });
  expect(await snapshot(other)).toEqual(afterErase);
  expect(
    await other.pg.withClient(
      async (c) => (await c.query('SELECT count(*)::int AS n FROM users WHERE id = $1', [subject])).rows[0],
    ),
  ).toEqual({ n: 0 });
});

test('a restore with erasures on record and no ledger key fails and leaves the target as it was', async ({
  deps,
  tenant,
  client,
  startWorker,
}) => {
  const ids = await fillDemo(tenant, 5);
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  await erased(client, tenant.id, String(ids[0]));
  const before = await snapshot(tenant);
  const keys = deps.ledgerKeys;
  (deps as { ledgerKeys: unknown }).ledgerKeys = undefined;
  try {
    const job = await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId });
    await expect(job.waitForResult({ timeoutMs: 60_000 })).rejects.toThrow(
      /no erasure ledger key is configured/,
    );
  } finally {
    (deps as { ledgerKeys: unknown }).ledgerKeys = keys;
  }
  expect(await snapshot(tenant)).toEqual(before);
});
