/**
 * A restore whose swap could fail half-way (a collection whose set-aside name would be too long):
 * found by probing backup and restore as a hostile user.
 */
import { expect } from 'vitest';
import { RestoreRecords } from '../src/backup/restore-records.ts';
import { digests, fillTenant } from './support/backups.ts';
import { test } from './support/fixtures.ts';

test('a live collection whose set-aside name is too long: the restore is all or nothing', async ({
  deps,
  tenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 30);
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  // After the backup, the app creates a collection with a long (valid) name: `t_<id>.<name>` fits
  // FerretDB's 235 bytes, `_dbfleet_x_<tag>_<name>` does not.
  const long = 'c'.repeat(235 - `${tenant.mongo.databaseName}.`.length - 5);
  await tenant.mongo.collection(long).insertOne({ x: 1 });
  await tenant.pg.withClient((c) => c.query(`UPDATE users SET display_name = 'after backup'`));
  const before = await digests(tenant);

  const job = await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId });
  const outcome = await job.waitForResult({ timeoutMs: 90_000 }).then(
    () => 'completed',
    (err: Error) => err.message,
  );
  const after = await digests(tenant);
  const pgChanged = Object.keys(before).some((k) => k.startsWith('postgres/') && before[k] !== after[k]);
  const mongoChanged = Object.keys(before).some((k) => k.startsWith('mongo/') && before[k] !== after[k]);
  const leftovers = (await tenant.mongo.listCollections({}, { nameOnly: true }).toArray())
    .map((c) => c.name)
    .filter((n) => n.startsWith('_dbfleet_r_'));
  const [run] = await new RestoreRecords(deps.control.pool, deps.prefix).list(tenant.id);
  const asideSchemas = await deps.control.pool.query<{ nspname: string }>(
    `SELECT nspname FROM pg_namespace WHERE nspname LIKE '\\_dbfleet\\_x\\_%'`,
  );
  const report = {
    outcome,
    pgChanged,
    mongoChanged,
    leftovers: leftovers.length,
    run: { state: run?.state, replaced_schema: run?.replaced_schema },
    asideSchemas: asideSchemas.rowCount,
  };
  // Either the restore completed (both stores restored), or it failed and neither store changed.
  expect(report.pgChanged, JSON.stringify(report)).toBe(report.mongoChanged);
  // And a failed run leaves nothing staged behind, and names any schema it moved aside.
  if (outcome !== 'completed') {
    expect(report.leftovers, JSON.stringify(report)).toBe(0);
    expect(report.asideSchemas === 0 || report.run.replaced_schema !== null, JSON.stringify(report)).toBe(
      true,
    );
  }
});
