/** The backup, restore, backups and restores commands, run as an operator runs them. */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { digests, fillTenant } from './support/backups.ts';
import { cliFor } from './support/cli.ts';
import { test } from './support/fixtures.ts';

test('back up, list, show, verify, restore into a new tenant, drop what was replaced, delete', async ({
  env,
  deps,
  tenant,
  spareTenant,
  startWorker,
  tmp,
}) => {
  await fillTenant(tenant, 40);
  startWorker();
  const cli = cliFor(env, { DBFLEET_LOCAL_STORAGE_DIR: tmp });
  const json = async (...args: string[]) => JSON.parse((await cli(...args)).stdout);

  const made = await cli('backup', tenant.id, '--local', '--wait');
  const { result: backup } = JSON.parse(made.stdout);
  expect(backup).toMatchObject({ tables: 8, collections: 6, keyId: 'test-1' });
  // Progress went to stderr as it happened: objects, records and bytes so far.
  expect(made.stderr).toMatch(
    /"progress":\{"phase":"postgres","objects":\d+,"records":\d+,"storedBytes":\d+\}/,
  );

  expect((await cli('backups', 'list', tenant.id)).stdout).toContain(backup.backupId);
  const shown = await json('backups', 'show', backup.backupId);
  expect(shown).toMatchObject({
    state: 'complete',
    tenant: tenant.id,
    objects: backup.objects,
    key: 'test-1',
  });
  expect(shown.manifest.objects).toContainEqual(
    expect.objectContaining({ name: 'postgres/tables/users', records: 40 }),
  );
  expect(await json('backups', 'verify', backup.backupId)).toEqual({
    backup: backup.backupId,
    verified: 'quick',
    objects: backup.objects,
  });
  expect(await json('backups', 'verify', backup.backupId, '--deep')).toMatchObject({ verified: 'deep' });

  // A flipped byte: a quick verify cannot see it (sizes match), a deep one names it and exits 1.
  const file = path.join(tmp, 'backups', tenant.id, backup.backupId, 'mongo/collections/sessions.bson');
  const original = await readFile(file);
  const flipped = Buffer.from(original);
  flipped[flipped.length - 3] = flipped[flipped.length - 3]! ^ 0x80;
  await writeFile(file, flipped);
  await expect(cli('backups', 'verify', backup.backupId, '--deep')).rejects.toMatchObject({
    code: 1,
    stdout: expect.stringMatching(/"fault": "(tampered|checksum)"/),
  });
  expect((await json('backups', 'show', backup.backupId)).verified).toMatch(/^(tampered|checksum) at /);
  await writeFile(file, original);

  const target = await spareTenant({ register: false });
  const { result: restored } = await json('restore', backup.backupId, '--into', target.id, '--wait');
  expect(restored).toMatchObject({ targetTenant: target.id, verified: true, replaced: { schema: null } });
  expect(await digests(target)).toEqual(await digests(tenant));

  // Again, on purpose over what is now there: the replaced data is kept until dropped on purpose.
  await cli('restore', backup.backupId, '--into', target.id, '--replace', '--wait');
  const listed = (await cli('restores', 'list', target.id)).stdout;
  const run = (
    await deps.control.pool.query(
      `SELECT run_id, replaced_schema FROM dbfleet.restores WHERE prefix = $1 AND target_tenant = $2 AND replaced_schema IS NOT NULL`,
      [deps.prefix, target.id],
    )
  ).rows[0] as { run_id: string; replaced_schema: string };
  expect(listed).toContain(run.replaced_schema);
  await expect(cli('restores', 'drop-replaced', run.run_id)).rejects.toMatchObject({ code: 2 });
  const schemaThere = async () =>
    (await deps.control.pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [run.replaced_schema]))
      .rowCount;
  expect(await schemaThere()).toBe(1);
  expect(await json('restores', 'drop-replaced', run.run_id, '--confirm')).toMatchObject({
    dropped: { schema: run.replaced_schema },
  });
  expect(await schemaThere()).toBe(0);
  expect(await digests(target)).toEqual(await digests(tenant));

  // Delete: a dry run first, then the manifest and every object go.
  await expect(cli('backups', 'delete', backup.backupId)).rejects.toMatchObject({
    code: 2,
    stdout: expect.stringContaining('manifest.json'),
  });
  expect(await json('backups', 'delete', backup.backupId, '--confirm')).toEqual({
    backup: backup.backupId,
    deleted: backup.objects + 1,
  });
  expect((await json('backups', 'show', backup.backupId)).state).toBe('deleted');
  await expect(cli('restore', backup.backupId, '--into', target.id, '--wait')).rejects.toMatchObject({
    stderr: expect.stringContaining('[manifest_missing]'),
  });
});

test('backups a crash left behind are listed as incomplete', async ({ env, deps, tenant }) => {
  const cli = cliFor(env);
  const { BackupCatalog } = await import('../src/backup/catalog.ts');
  const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
  const start = (id: string) =>
    catalog.start({
      backupId: id,
      tenant: tenant.id,
      runId: id,
      destination: 's3',
      manifestKey: `backups/${tenant.id}/${id}/manifest.json`,
      keyId: 'k',
    });
  await start('crashed');
  await start('going');
  await deps.control.pool.query(
    `UPDATE dbfleet.backups SET updated_at = now() - interval '1 hour' WHERE prefix = $1 AND backup_id = 'crashed'`,
    [deps.prefix],
  );
  const out = (await cli('backups', 'list', '--incomplete')).stdout;
  expect(out).toContain('crashed');
  expect(out).not.toContain('going');
  await expect(cli('backups', 'delete', 'going', '--confirm')).rejects.toMatchObject({
    stderr: expect.stringContaining('is running'),
  });
  expect(JSON.parse((await cli('backups', 'delete', 'crashed', '--confirm')).stdout)).toEqual({
    backup: 'crashed',
    deleted: 0,
  });
});
