import { expect } from 'vitest';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { test } from './support/fixtures.ts';

test('the catalog follows a backup from running to complete or failed, per deployment, once per run', async ({
  deps,
}) => {
  const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
  const other = new BackupCatalog(deps.control.pool, `${deps.prefix}-other`);
  const start = (backupId: string, runId: string) =>
    catalog.start({
      backupId,
      tenant: 'acme',
      runId,
      destination: 's3',
      manifestKey: `m/${backupId}`,
      keyId: 'k1',
    });
  await start('b1', 'run-1');
  await start('b1', 'run-1'); // a retried job: the same row
  await expect(start('b1', 'run-2')).rejects.toThrow(/backup id b1 belongs to another run/);
  await start('b2', 'run-2');
  await catalog.complete('b1', { objects: 9, records: 12_345, storedBytes: 6_789 });
  await catalog.fail('b2', 'connection');

  expect(await catalog.get('b1')).toMatchObject({
    state: 'complete',
    objects: 9,
    records: '12345',
    stored_bytes: '6789',
    key_id: 'k1',
    run_id: 'run-1',
  });
  expect(await catalog.get('b2')).toMatchObject({ state: 'failed', error_code: 'connection' });
  expect((await catalog.list('acme')).map((b) => b.backup_id).sort()).toEqual(['b1', 'b2']);
  // A complete backup is not reopened by a late retry of its run.
  await start('b1', 'run-1');
  expect((await catalog.get('b1'))!.state).toBe('complete');
  // Incomplete: failed, or running with a heartbeat quiet for longer than asked (a crash left it).
  await start('b3', 'run-3');
  await catalog.touch('b3', { objects: 2, storedBytes: 100 });
  const incomplete = async () => (await catalog.incomplete('acme', 3_600_000)).map((b) => b.backup_id);
  expect(await incomplete()).toEqual(['b2']);
  await deps.control.pool.query(
    `UPDATE dbfleet.backups SET updated_at = now() - interval '2 hours' WHERE prefix = $1 AND backup_id = 'b3'`,
    [deps.prefix],
  );
  expect(await incomplete()).toEqual(['b2', 'b3']);
  expect(await catalog.get('b3')).toMatchObject({ objects: 2, stored_bytes: '100' });
  await catalog.recordVerify('other', 'b1', 'bad'); // another tenant's job: not this backup
  await catalog.recordVerify('acme', 'b1', 'ok');
  expect(await catalog.get('b1')).toMatchObject({ verify_result: 'ok', verified_at: expect.any(Date) });
  // A claim made from a stale reading (the row moved since) takes nothing.
  const seen = (await catalog.get('b3'))!;
  await deps.control.pool.query(
    `UPDATE dbfleet.backups SET updated_at = now() - interval '3 hours' WHERE prefix = $1 AND backup_id = 'b3'`,
    [deps.prefix],
  );
  expect(await catalog.claimForDeletion(seen)).toBe(false);
  expect(await catalog.claimForDeletion((await catalog.get('b2'))!)).toBe(true);
  // Deleted is final: the run's late retry cannot take it up again and complete it.
  await expect(start('b2', 'run-2')).rejects.toThrow(/b2 was deleted while its retry waited/);
  expect(await catalog.complete('b2', { objects: 1, records: 1, storedBytes: 1 })).toBe(false);
  expect(await incomplete()).toEqual(['b3']);
  expect(await other.list('acme')).toEqual([]);
});
