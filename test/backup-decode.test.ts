/**
 * The way out without dbfleet (issue 14): a backup made through the queue is turned into plain files
 * by tools/decode-backup.mjs, run as a child process with nothing but the master key in its
 * environment, and loaded with psql and mongorestore alone into a new schema and database, which
 * then equal the source exactly. And what the decoder refuses, leaving no plain output.
 */
import { execFile } from 'node:child_process';
import { cp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { expect } from 'vitest';
import { parseMasterKeys, StaticKeyProvider } from '../src/backup/keys.ts';
import { readManifest, writeManifest } from '../src/backup/manifest.ts';
import { DEFAULT_CHUNK_BYTES, HEADER_BYTES } from '../src/backup/sealed-stream.ts';
import type { PayloadInput, Result } from '../queues/index.ts';
import type { FleetClient } from '../src/client/client.ts';
import { digests, fillTenant, fingerprint } from './support/backups.ts';
import { ROOT, test, type TenantHandle } from './support/fixtures.ts';

const DECODER = path.join(ROOT, 'tools/decode-backup.mjs');
const SEALED_CHUNK = DEFAULT_CHUNK_BYTES + 16;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], env: Record<string, string | undefined>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env, maxBuffer: 16 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/**
 * The decoder, in an environment holding only PATH and the keys given: no database settings, no
 * repository on its module path, as a user who has left dbfleet would run it.
 */
const decode = (args: string[], keys: string | null = process.env.DBFLEET_BACKUP_KEYS!) =>
  run(process.execPath, [DECODER, ...args], {
    PATH: process.env.PATH,
    DBFLEET_BACKUP_KEYS: keys ?? undefined,
  });

/** Debian's psql, the newest installed (`/usr/lib/postgresql/<version>/bin/psql`), else the one on PATH. */
function psqlPath(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(path.join(root, v, 'bin/psql')))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  return versions.length ? path.join(root, versions[0]!, 'bin/psql') : 'psql';
}

/** A table of random bytes: its object spans several sealed chunks, so chunking itself is exercised. */
async function addBlobs(t: TenantHandle, rows: number): Promise<void> {
  await t.pg.withClient((c) =>
    c.query(`
      CREATE TABLE blobs (id integer PRIMARY KEY, data bytea NOT NULL);
      INSERT INTO blobs SELECT i, (SELECT decode(string_agg(md5(random()::text || i || j), ''), 'hex')
        FROM generate_series(1, 128) j) FROM generate_series(1, ${rows}) i;`),
  );
}

async function backupToFolder(
  client: FleetClient,
  tenant: string,
  tmp: string,
  options: Partial<PayloadInput<'backup'>> = {},
): Promise<{ result: Result<'backup'>; folder: string }> {
  const job = await client.enqueue('backup', { tenant, destination: 'local', ...options });
  const result = await job.waitForResult({ timeoutMs: 60_000 });
  return { result, folder: path.join(tmp, 'backups', tenant, result.backupId) };
}

test('a backup decoded with the key alone loads with psql and mongorestore into a new schema and database, identical', async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
  tmp,
}) => {
  await fillTenant(tenant);
  await addBlobs(tenant, 500);
  startWorker();
  const { result } = await backupToFolder(client, tenant.id, tmp);
  const target = await spareTenant({ register: false });
  const at = deps.tenants.locate(target.id);
  const out = path.join(tmp, 'plain');

  // The store's root and the backup named, as a user with a copy of the bucket would give them.
  const decoded = await decode([
    '--from',
    tmp,
    '--tenant',
    tenant.id,
    '--backup',
    result.backupId,
    '--out',
    out,
    '--schema',
    at.namespace,
    '--database',
    at.namespace,
  ]);
  expect(decoded, decoded.stderr).toMatchObject({ code: 0 });
  expect(decoded.stdout).toContain(`decoded backup ${result.backupId}`);
  expect((await readdir(path.join(out, 'postgres'))).sort()).toEqual(
    [
      'constraints.sql',
      'data.sql',
      'restore.sh',
      'schema.sql',
      ...['_dbfleet_backfills', '_dbfleet_migrations', 'blobs', 'consent', 'events', 'notes']
        .concat(['playlist_tracks', 'playlists', 'users'])
        .map((t) => `${t}.copy`),
    ].sort(),
  );

  const psql = await run('sh', [path.join(out, 'postgres/restore.sh'), at.postgresUrl], {
    PATH: process.env.PATH,
    PSQL: psqlPath(),
  });
  expect(psql, psql.stderr).toMatchObject({ code: 0 });
  const mongorestore = await run(
    path.join(process.env.DBFLEET_MONGO_TOOLS!, 'mongorestore'),
    ['--uri', at.mongoUrl, '--dir', path.join(out, 'mongo')],
    { PATH: process.env.PATH },
  );
  expect(mongorestore, mongorestore.stderr).toMatchObject({ code: 0 });

  const loaded = await digests(target);
  expect(Object.keys(loaded)).toContain('postgres/blobs');
  expect(loaded).toEqual(await digests(tenant));
  expect(await fingerprint(target)).toEqual(await fingerprint(tenant));
});

test('the decoder refuses an edited manifest, a changed, cut or reordered object, a wrong key and an unsealed backup not allowed; no plain output', async ({
  tenant,
  client,
  startWorker,
  tmp,
}) => {
  await fillTenant(tenant, 50);
  await addBlobs(tenant, 400);
  startWorker();
  const sealed = await backupToFolder(client, tenant.id, tmp);
  const keys = process.env.DBFLEET_BACKUP_KEYS!;
  const { dataKey } = await readManifest(
    await readFile(path.join(sealed.folder, 'manifest.json'), 'utf8'),
    { tenant: tenant.id, backupId: sealed.result.backupId },
    new StaticKeyProvider(parseMasterKeys(keys)),
    { allowUnsealed: false },
  );

  let n = 0;
  /** A copy of the backup changed by `change`, decoded: refused with `fault`, nothing written. */
  const refused = async (
    fault: string,
    change: (folder: string) => Promise<void>,
    options: { keys?: string | null; folder?: string } = {},
  ) => {
    const copy = path.join(tmp, `case-${++n}`);
    await cp(options.folder ?? sealed.folder, copy, { recursive: true });
    await change(copy);
    const out = path.join(tmp, `case-${n}-out`);
    const r = await decode(['--from', copy, '--out', out], options.keys !== undefined ? options.keys : keys);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain(`refused (${fault})`);
    // Neither key material nor data in what it says.
    expect(r.stderr).not.toContain(keys.split(':')[1]!);
    expect(r.stderr).not.toContain('example.test');
    expect(existsSync(out)).toBe(false);
    expect((await readdir(tmp)).filter((f) => f.startsWith(`case-${n}-out`))).toEqual([]);
    return r.stderr;
  };
  const editManifest = async (folder: string, edit: (m: { objects: ObjectEntry[] }) => void) => {
    const file = path.join(folder, 'manifest.json');
    const m = JSON.parse(await readFile(file, 'utf8')) as { objects: ObjectEntry[] };
    edit(m);
    await writeFile(file, JSON.stringify(m, null, 1));
  };
  /**
   * Rewrites an object's stored bytes and reseals the manifest over them with the data key: a
   * backup whose checksums all agree, so only the sealed stream's own checks can catch the change.
   */
  const rewriteSealed = async (folder: string, key: string, change: (stored: Buffer) => Buffer) => {
    const file = path.join(folder, 'manifest.json');
    const { manifest } = await readManifest(
      await readFile(file, 'utf8'),
      { tenant: tenant.id, backupId: sealed.result.backupId },
      new StaticKeyProvider(parseMasterKeys(keys)),
      { allowUnsealed: false },
    );
    const o = manifest.objects.find((x) => x.key === key)!;
    const stored = change(await readFile(path.join(folder, key)));
    await writeFile(path.join(folder, key), stored);
    o.storedBytes = stored.length;
    o.sha256 = createHash('sha256').update(stored).digest('hex');
    await writeFile(file, writeManifest(manifest, dataKey));
  };
  const blobs = 'postgres/tables/blobs.copy';
  expect((await readFile(path.join(sealed.folder, blobs))).length).toBeGreaterThan(
    HEADER_BYTES + 2 * SEALED_CHUNK,
  );

  // A manifest edited by hand: one table's row count.
  expect(
    await refused('manifest_tampered', (f) =>
      editManifest(f, (m) => {
        m.objects.find((o) => o.key === 'postgres/tables/users.copy')!.records += 1;
      }),
    ),
  ).toContain('manifest was changed');
  // One byte flipped in a table's object: named, and no plain file of it (nor of anything).
  expect(
    await refused('checksum', async (f) => {
      const file = path.join(f, 'postgres/tables/users.copy');
      const bytes = await readFile(file);
      bytes[bytes.length >> 1]! ^= 0x01;
      await writeFile(file, bytes);
    }),
  ).toContain('postgres/tables/users.copy');
  // An object gone.
  await refused('object_missing', (f) => rm(path.join(f, 'mongo/collections/sessions.bson')));
  // Checksums made to agree: a stream cut after a whole chunk, and two chunks swapped.
  expect(
    await refused('truncated', (f) =>
      rewriteSealed(f, blobs, (b) => b.subarray(0, HEADER_BYTES + SEALED_CHUNK)),
    ),
  ).toContain('before its last chunk');
  expect(
    await refused('tampered', (f) =>
      rewriteSealed(f, blobs, (b) =>
        Buffer.concat([
          b.subarray(0, HEADER_BYTES),
          b.subarray(HEADER_BYTES + SEALED_CHUNK, HEADER_BYTES + 2 * SEALED_CHUNK),
          b.subarray(HEADER_BYTES, HEADER_BYTES + SEALED_CHUNK),
          b.subarray(HEADER_BYTES + 2 * SEALED_CHUNK),
        ]),
      ),
    ),
  ).toContain('chunk 0 does not authenticate');
  // Keys: another key under the same id, none at all, and keys on the command line.
  await refused('wrong_key', async () => undefined, { keys: `test-1:${randomBytes(32).toString('base64')}` });
  await refused('unknown_key', async () => undefined, { keys: null });
  const onArgv = await decode(['--from', sealed.folder, '--out', path.join(tmp, 'x'), `--key=${keys}`]);
  expect(onArgv.code).toBe(2);
  expect(onArgv.stderr).toContain('DBFLEET_BACKUP_KEYS only');
  expect(onArgv.stderr).not.toContain(keys.split(':')[1]!);

  // A backup made without a key (gzip): refused unless allowed, then the same rows as the sealed one.
  const plain = await backupToFolder(client, tenant.id, tmp, { encrypt: false, compression: 'gzip' });
  await refused('unsealed', async () => undefined, { folder: plain.folder });
  const outs = { sealed: path.join(tmp, 'sealed-out'), plain: path.join(tmp, 'plain-out') };
  expect(await decode(['--from', sealed.folder, '--out', outs.sealed])).toMatchObject({ code: 0 });
  expect(await decode(['--from', plain.folder, '--out', outs.plain, '--allow-unsealed'], null)).toMatchObject(
    { code: 0 },
  );
  // Byte for byte: the plain files do not depend on compression or sealing.
  for (const file of ['postgres/users.copy', 'postgres/notes.copy', 'postgres/blobs.copy'])
    expect(await readFile(path.join(outs.plain, file))).toEqual(await readFile(path.join(outs.sealed, file)));
  const bson = `mongo/t_${tenant.id}/listening_events.bson`;
  expect(await readFile(path.join(outs.plain, bson))).toEqual(await readFile(path.join(outs.sealed, bson)));
});

interface ObjectEntry {
  key: string;
  records: number;
}
