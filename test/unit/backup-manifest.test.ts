import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { newDataKey, parseMasterKeys, StaticKeyProvider } from '../../src/backup/keys.ts';
import {
  MANIFEST_FORMAT,
  readManifest,
  writeManifest,
  type ManifestBody,
} from '../../src/backup/manifest.ts';

const keys = (id = 'k1') =>
  new StaticKeyProvider(parseMasterKeys(`${id}:${randomBytes(32).toString('base64')}`));

const body = (key: ManifestBody['key']): ManifestBody => ({
  format: MANIFEST_FORMAT,
  tenant: 'acme',
  backupId: 'b1',
  runId: '3b241101-e2bb-4255-8caf-4136c566a962',
  startedAt: '2026-11-30T03:00:00.000Z',
  finishedAt: '2026-11-30T03:01:00.000Z',
  migrations: { postgres: '2', mongo: '2' },
  positions: { postgresLsn: '0/16B3748', mongoClusterTime: null },
  key,
  objects: [
    {
      key: 'backups/acme/b1/postgres/users',
      name: 'postgres/users',
      kind: 'table',
      compression: 'zstd',
      sealed: key !== null,
      records: 3,
      plainBytes: 120,
      storedBytes: 90,
      sha256: 'a'.repeat(64),
    },
  ],
});

describe('backup manifests', () => {
  it('read back as written, with the data key unwrapped', async () => {
    const provider = keys();
    const dataKey = newDataKey();
    const m = body(await provider.wrap(dataKey));
    const read = await readManifest(writeManifest(m, dataKey), { tenant: 'acme', backupId: 'b1' }, provider, {
      allowUnsealed: false,
    });
    expect(read.manifest).toEqual(m);
    expect(read.dataKey).toEqual(dataKey);
  });

  it('refuse an edit, another tenant’s or backup’s manifest, a wrong key, a stripped seal, and garbage', async () => {
    const provider = keys();
    const dataKey = newDataKey();
    const text = writeManifest(body(await provider.wrap(dataKey)), dataKey);
    const expected = { tenant: 'acme', backupId: 'b1' };
    const read = (t: string, e = expected, p = provider, allowUnsealed = false) =>
      readManifest(t, e, p, { allowUnsealed }).catch(
        (err: { fault?: string; code?: string }) => err.fault ?? err.code,
      );

    const edited = text.replace('"records": 3', '"records": 4');
    expect(edited).not.toBe(text);
    expect(await read(edited)).toBe('manifest_tampered');
    expect(await read(text, { tenant: 'globex', backupId: 'b1' })).toBe('wrong_tenant');
    expect(await read(text, { tenant: 'acme', backupId: 'b2' })).toBe('wrong_backup');
    expect(await read(text, expected, keys())).toBe('wrong_key');
    expect(await read(text, expected, keys('k2'))).toBe('unknown_key');
    expect(await read('{"format": "something else"}')).toBe('manifest_unreadable');
    expect(await read(text.slice(0, text.length / 2))).toBe('manifest_unreadable');

    // A forger strips the key and recomputes the plain checksum: refused where sealing is expected.
    const unsealed = writeManifest({ ...body(null), objects: body(null).objects }, undefined);
    expect(await read(unsealed)).toBe('unsealed');
    expect(
      (await readManifest(unsealed, expected, provider, { allowUnsealed: true })).dataKey,
    ).toBeUndefined();
  });
});
