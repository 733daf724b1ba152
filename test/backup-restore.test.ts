/** Backup and restore end to end, through the queues, on the real services. */
import { randomBytes } from 'node:crypto';
import { cp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { parseMasterKeys, StaticKeyProvider } from '../src/backup/keys.ts';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { readText } from '../src/backup/backup-tenant.ts';
import { RestoreRecords } from '../src/backup/restore-records.ts';
import { collectionAlias } from '../src/backup/restore-tenant.ts';
import { migrateTenant } from '../src/migrations/migrator.ts';
import { withPostgresTenantLock } from '../src/migrations/tenant-locks.ts';
import { withPoolClient } from '../src/stores/postgres.ts';
import { digests, fillTenant, fingerprint } from './support/backups.ts';
import { eventually, test } from './support/fixtures.ts';

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
  expect(status.stores.map((s) => s.current)).toEqual(['3', '2']);
  expect(await new RestoreRecords(deps.control.pool, deps.prefix).list(target.id)).toMatchObject([
    { state: 'complete', backup_id: backup.backupId, source_tenant: tenant.id, erasures_reapplied: 0 },
  ]);

  expect({ digests: await digests(bystander), fingerprint: await fingerprint(bystander) }).toEqual(
    bystanderBefore,
  );
});

test('a restore into the same tenant puts back the data as it was at backup time, and keeps what it replaced', async ({
  deps,
  tenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 100);
  startWorker();
  const before = { digests: await digests(tenant), fingerprint: await fingerprint(tenant) };
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  // The tenant moves on: rows changed, deleted and added, a collection dropped, one created, a table added.
  await tenant.pg.withClient((c) =>
    c.query(`UPDATE users SET display_name = 'changed' WHERE id <= 10;
             DELETE FROM consent WHERE user_id > 50;
             INSERT INTO notes (body) VALUES ('later');
             CREATE TABLE scratch (x int)`),
  );
  await tenant.mongo.collection('audit_log').drop();
  await tenant.mongo.collection('later').insertOne({ x: 1 });
  await tenant.mongo.collection('sessions').updateMany({}, { $set: { device: 'changed' } });
  const changed = await digests(tenant);
  expect(changed).not.toEqual(before.digests);

  const restored = await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId })
  ).waitForResult({ timeoutMs: 60_000 });
  expect({ digests: await digests(tenant), fingerprint: await fingerprint(tenant) }).toEqual(before);
  // What was there stays recoverable, aside, until dropped on purpose.
  const { schema, collections } = restored.replaced!;
  expect(schema).toMatch(/^_dbfleet_x_[0-9a-f]{12}$/);
  expect(collections).toBe(`${schema}_`);
  const asideRows = await deps.postgres
    .pool(deps.tenants.locate(tenant.id).postgresUrl)
    .query(`SELECT count(*)::int AS n FROM "${schema}".users WHERE display_name = 'changed'`);
  expect(asideRows.rows[0].n).toBe(10);
  // Set-aside collections have short names of their own; the restore's marker says which is which.
  const marker = await tenant.mongo
    .collection<{ _id: string; aside: { name: string; as: string }[] }>('_dbfleet_restores')
    .findOne({ _id: schema!.slice('_dbfleet_x_'.length) });
  const aside = new Map(marker!.aside.map((a) => [a.name, a.as]));
  expect([...aside.keys()].sort()).toEqual([
    '_dbfleet_backfills',
    '_dbfleet_migrations',
    'later',
    'listening_events',
    'profiles',
    'sessions',
  ]);
  for (const as of aside.values()) expect(as.startsWith(collections!)).toBe(true);
  expect(aside.get('later')).toBe(collectionAlias(schema!, 'later'));
  expect(await tenant.mongo.collection(aside.get('later')!).countDocuments()).toBe(1);
  expect(await tenant.mongo.collection(aside.get('sessions')!).countDocuments({ device: 'changed' })).toBe(
    100,
  );
});

test('a damaged, incomplete, foreign or wrongly keyed backup is refused before anything is written, naming the fault', async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
  tmp,
}) => {
  await fillTenant(tenant, 100);
  const other = await spareTenant();
  await fillTenant(other, 20);
  startWorker();
  const backupOf = async (t: { id: string }) =>
    (await client.enqueue('backup', { tenant: t.id, destination: 'local' })).waitForResult({
      timeoutMs: 60_000,
    });
  const good = await backupOf(tenant);
  const foreign = await backupOf(other);
  const folder = (t: string, id: string) => path.join(tmp, 'backups', t, id);
  const before = await digests(tenant);
  const catalog = new BackupCatalog(deps.control.pool, deps.prefix);

  const flip = async (file: string, at: (size: number) => number) => {
    const bytes = await readFile(file);
    const i = at(bytes.length);
    bytes[i] = bytes[i]! ^ 0x01;
    await writeFile(file, bytes);
  };
  const table = (dir: string) => path.join(dir, 'postgres/tables/users.copy');

  // The same id as the good backup, so the manifest matches: only the object is damaged.
  const damaged = async (label: string, damage: (dir: string) => Promise<void>, fault: RegExp) => {
    const dir = folder(tenant.id, good.backupId);
    const saved = `${dir}.saved`;
    await cp(dir, saved, { recursive: true });
    try {
      await damage(dir);
      const job = await client.enqueue('restore', { tenant: tenant.id, backupId: good.backupId });
      await expect(job.waitForResult({ timeoutMs: 60_000 }), label).rejects.toThrow(fault);
      expect(await digests(tenant), label).toEqual(before);
      const staged = await deps.control.pool.query(
        `SELECT 1 FROM pg_namespace WHERE nspname LIKE '\\_dbfleet\\_r\\_%'`,
      );
      expect(staged.rowCount, label).toBe(0);
    } finally {
      await rm(dir, { recursive: true });
      await rename(saved, dir);
    }
  };
  await damaged(
    'flipped byte',
    (dir) => flip(table(dir), (n) => Math.floor(n / 2)),
    /\[(tampered|checksum)\]/,
  );
  await damaged(
    'truncated',
    async (dir) => writeFile(table(dir), (await readFile(table(dir))).subarray(0, -100)),
    /\[size\]/,
  );
  await damaged('missing object', (dir) => rm(table(dir)), /\[object_missing\]/);
  await damaged(
    'edited manifest',
    async (dir) => {
      const file = path.join(dir, 'manifest.json');
      const m = JSON.parse(await readFile(file, 'utf8'));
      m.objects.find((o: { name: string }) => o.name === 'postgres/tables/users').records += 1;
      await writeFile(file, JSON.stringify(m));
    },
    /\[manifest_tampered\]/,
  );
  await damaged('missing manifest', (dir) => rm(path.join(dir, 'manifest.json')), /\[manifest_missing\]/);
  // Another tenant's backup, put where this tenant's would be.
  await cp(folder(other.id, foreign.backupId), folder(tenant.id, foreign.backupId), { recursive: true });
  const job = await client.enqueue('restore', {
    tenant: tenant.id,
    backupId: foreign.backupId,
    source: 'local',
  });
  await expect(job.waitForResult({ timeoutMs: 60_000 })).rejects.toThrow(/\[wrong_tenant\]/);
  expect(await digests(tenant)).toEqual(before);
  // The master key is not the one the backup was made with.
  const keys = deps.backupKeys;
  try {
    deps.backupKeys = new StaticKeyProvider(parseMasterKeys(`test-1:${randomBytes(32).toString('base64')}`));
    await damaged('wrong key', async () => undefined, /\[wrong_key\]/);
    deps.backupKeys = new StaticKeyProvider(parseMasterKeys(`other:${randomBytes(32).toString('base64')}`));
    await damaged('unknown key', async () => undefined, /\[unknown_key\]/);
  } finally {
    deps.backupKeys = keys;
  }
  // The catalog remembers what the last verify found; the good backup still restores.
  expect((await catalog.get(good.backupId))!.verify_result).toBe('unknown_key');
  await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: good.backupId })
  ).waitForResult({
    timeoutMs: 60_000,
  });
  expect((await catalog.get(good.backupId))!.verify_result).toBe('ok');
  expect(await digests(tenant)).toEqual(before);
});

test('without a master key a backup fails closed; a backup without a key is a choice, and so is restoring one', async ({
  deps,
  tenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 20);
  startWorker();
  const keys = deps.backupKeys;
  deps.backupKeys = undefined;
  try {
    const refused = await client.enqueue('backup', { tenant: tenant.id });
    await expect(refused.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(
      /\[no_backup_key\].*encrypt: false/,
    );
    const written: string[] = [];
    for await (const o of deps.objects.list(`backups/${tenant.id}/`)) written.push(o.key);
    expect(written).toEqual([]);

    const plain = await (
      await client.enqueue('backup', { tenant: tenant.id, encrypt: false, compression: 'gzip' })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(plain.keyId).toBeNull();
    const manifest = JSON.parse(await readText(deps.objects, plain.manifestKey));
    expect(manifest).toMatchObject({ key: null, seal: { kind: 'sha256' } });
    expect(
      manifest.objects.every(
        (o: { sealed: boolean; compression: string }) => !o.sealed && o.compression === 'gzip',
      ),
    ).toBe(true);

    const before = await digests(tenant);
    await tenant.pg.withClient((c) => c.query('DELETE FROM consent'));
    const unsealed = await client.enqueue('restore', { tenant: tenant.id, backupId: plain.backupId });
    await expect(unsealed.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(/\[unsealed\]/);
    await (
      await client.enqueue('restore', { tenant: tenant.id, backupId: plain.backupId, allowUnencrypted: true })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(await digests(tenant)).toEqual(before);
  } finally {
    deps.backupKeys = keys;
  }
});

test('another tenant is restored into only when new or empty, or on purpose; verify-only changes nothing', async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 30);
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id })
  ).waitForResult({ timeoutMs: 60_000 });
  const source = await digests(tenant);

  const busy = await spareTenant();
  await fillTenant(busy, 10);
  const busyBefore = await digests(busy);
  const verified = await (
    await client.enqueue('restore', {
      tenant: tenant.id,
      backupId: backup.backupId,
      targetTenant: busy.id,
      verifyOnly: true,
    })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(verified).toMatchObject({ verified: true, restoredTables: 0, replaced: null });
  const refused = await client.enqueue('restore', {
    tenant: tenant.id,
    backupId: backup.backupId,
    targetTenant: busy.id,
  });
  await expect(refused.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(
    /\[target_not_empty\].*table consent/,
  );
  expect(await digests(busy)).toEqual(busyBefore);
  const replaced = await (
    await client.enqueue('restore', {
      tenant: tenant.id,
      backupId: backup.backupId,
      targetTenant: busy.id,
      replace: true,
    })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(await digests(busy)).toEqual(source);
  expect(replaced.replaced!.schema).toMatch(/^_dbfleet_x_/);

  // Registered, with an empty schema and database: new enough.
  const empty = await spareTenant({ migrate: false });
  await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId, targetTenant: empty.id })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(await digests(empty)).toEqual(source);
  expect(await new RestoreRecords(deps.control.pool, deps.prefix).list(busy.id)).toMatchObject([
    { state: 'complete', replaced_schema: replaced.replaced!.schema },
    { state: 'failed', error_code: 'target_not_empty' },
  ]);
});

test('master keys rotate: new backups use the current key, older ones still open with the key they name', async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 20);
  startWorker();
  const old = `old-1:${randomBytes(32).toString('base64')}`;
  const current = `new-2:${randomBytes(32).toString('base64')}`;
  const keys = deps.backupKeys;
  try {
    deps.backupKeys = new StaticKeyProvider(parseMasterKeys(old));
    const before = await (
      await client.enqueue('backup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(before.keyId).toBe('old-1');
    // Rotated: the new key first, the old one kept to read older backups.
    deps.backupKeys = new StaticKeyProvider(parseMasterKeys(`${current},${old}`));
    const after = await (
      await client.enqueue('backup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(after.keyId).toBe('new-2');
    for (const b of [before, after]) {
      const target = await spareTenant({ register: false });
      await (
        await client.enqueue('restore', { tenant: tenant.id, backupId: b.backupId, targetTenant: target.id })
      ).waitForResult({ timeoutMs: 60_000 });
      expect(await digests(target)).toEqual(await digests(tenant));
    }
    // The old key retired: backups made under it no longer open, and say which key they need.
    deps.backupKeys = new StaticKeyProvider(parseMasterKeys(current));
    const refused = await client.enqueue('restore', {
      tenant: tenant.id,
      backupId: before.backupId,
      verifyOnly: true,
    });
    await expect(refused.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(
      /\[unknown_key\] master key old-1 is not configured/,
    );
  } finally {
    deps.backupKeys = keys;
  }
});

test('a backup or a restore waits for a migration of the tenant to finish, and the other way round', async ({
  deps,
  tenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 20);
  startWorker();
  const pool = deps.postgres.pool(deps.tenants.locate(tenant.id).postgresUrl);
  // A migration of the tenant holds its lock (as migrate does) for a while.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const migration = withPoolClient(pool, (c) =>
    withPostgresTenantLock(c, tenant.pg.schema, 'exclusive', 5_000, async () => {
      locked();
      await held;
    }),
  );
  await isLocked;
  const job = await client.enqueue('backup', { tenant: tenant.id });
  const result = job.waitForResult({ timeoutMs: 60_000 });
  await new Promise((r) => setTimeout(r, 1_500));
  const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
  // Waiting for the lock: started, no table read yet.
  expect((await catalog.list(tenant.id)).map((b) => b.state)).toEqual(['running']);
  expect(
    await client
      .queue('backup')
      .getJob(job.id)
      .then((j) => (j?.progress as { phase?: string }).phase),
  ).toBe('mongo');
  release();
  await migration;
  const backup = await result;
  expect((await catalog.get(backup.backupId))!.state).toBe('complete');

  // A restore holds the lock exclusively: a migration run meanwhile waits, then goes on.
  const restore = await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId });
  await eventually(
    async () => {
      const p = (await client.queue('restore').getJob(restore.id))?.progress as
        { phase?: string } | undefined;
      return p?.phase === 'postgres' || p?.phase === 'mongo' || p?.phase === 'swap';
    },
    30_000,
    5,
  );
  // By the time the migration has the lock, the restore has swapped its data in.
  const seenByMigration = await withPoolClient(pool, (c) =>
    withPostgresTenantLock(c, tenant.pg.schema, 'exclusive', 60_000, async () => {
      const staged = await c.query(`SELECT 1 FROM pg_namespace WHERE nspname LIKE '\\_dbfleet\\_r\\_%'`);
      const [row] = await new RestoreRecords(deps.control.pool, deps.prefix).list(tenant.id);
      return { staged: staged.rowCount, replaced: row?.replaced_schema };
    }),
  );
  expect(seenByMigration).toEqual({ staged: 0, replaced: expect.stringMatching(/^_dbfleet_x_/) });
  await restore.waitForResult({ timeoutMs: 60_000 });
});

test('a backup of one store restores that store and leaves the other as it is', async ({
  tenant,
  client,
  startWorker,
}) => {
  await fillTenant(tenant, 20);
  startWorker();
  const backup = await (
    await client.enqueue('backup', { tenant: tenant.id, stores: ['postgres'] })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(backup).toMatchObject({ collections: 0, tables: 8 });
  const atBackup = await digests(tenant);
  await tenant.pg.withClient((c) => c.query('DELETE FROM consent'));
  await tenant.mongo.collection('sessions').deleteMany({ userId: { $gt: 10 } });
  const mongoNow = Object.fromEntries(
    Object.entries(await digests(tenant)).filter(([k]) => k.startsWith('mongo/')),
  );
  const restored = await (
    await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId })
  ).waitForResult({ timeoutMs: 60_000 });
  expect(restored).toMatchObject({
    restoredTables: 8,
    restoredCollections: 0,
    replaced: { collections: null },
  });
  expect(await digests(tenant)).toEqual({
    ...Object.fromEntries(Object.entries(atBackup).filter(([k]) => k.startsWith('postgres/'))),
    ...mongoNow,
  });
});
