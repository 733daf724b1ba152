/** Backup objects on both object stores: compressed, sealed, hashed as stored, and read back whole or refused. */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect } from 'vitest';
import { newDataKey } from '../src/backup/keys.ts';
import {
  readObject,
  writeObject,
  type Compression,
  type StoredObjectInfo,
} from '../src/backup/object-codec.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { LocalObjectStore } from '../src/storage/local.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { S3ObjectStore } from '../src/storage/s3.ts';
import { test, uniqueId } from './support/fixtures.ts';

const stores: { name: string; open: (deps: FleetDeps, tmp: string) => ObjectStore }[] = [
  { name: 's3', open: (deps) => new S3ObjectStore(deps.s3, deps.env.DBFLEET_S3_BUCKET) },
  { name: 'local', open: (_deps, tmp) => new LocalObjectStore(tmp) },
];

/** Compressible text (COPY-like lines) with some random bytes in it. */
const sample = (lines: number) =>
  Buffer.concat(
    Array.from({ length: lines }, (_, i) =>
      Buffer.from(`${i}\tuser${i}@example.test\t${randomBytes(4).toString('hex')}\n`),
    ),
  );

const readAll = async (stream: Readable) => {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
};

describe.for(stores)('backup objects on the $name store', ({ open }) => {
  test('round-trip with each compression, sealed and not; the manifest entry says what is stored', async ({
    deps,
    tmp,
  }) => {
    const store = open(deps, tmp);
    const data = sample(20_000);
    const prefix = uniqueId('backups/');
    for (const compression of ['zstd', 'gzip', 'none'] as Compression[]) {
      for (const dataKey of [newDataKey(), undefined]) {
        const info = await writeObject(Readable.from([data]), {
          store,
          key: `${prefix}/${compression}-${dataKey ? 'sealed' : 'plain'}`,
          name: 'postgres/users',
          compression,
          dataKey,
        });
        expect(info).toMatchObject({ plainBytes: data.length, compression, sealed: dataKey !== undefined });
        expect((await store.head(info.key))!.size).toBe(info.storedBytes);
        if (compression !== 'none') expect(info.storedBytes).toBeLessThan(data.length / 2);
        expect(await readAll(await readObject(store, info, dataKey))).toEqual(data);
        if (dataKey)
          expect((await readAll(await store.get(info.key))).includes(Buffer.from('user1@'))).toBe(false);
        await store.delete(info.key);
      }
    }
  });

  test('a changed, cut or misnamed object is refused, with the cause', async ({ deps, tmp }) => {
    const store = open(deps, tmp);
    const dataKey = newDataKey();
    const key = `${uniqueId('backups/')}/users`;
    const info = await writeObject(Readable.from([sample(5_000)]), {
      store,
      key,
      name: 'postgres/users',
      compression: 'zstd',
      dataKey,
    });
    const stored = await readAll(await store.get(key));
    const attempt = async (bytes: Buffer, entry: StoredObjectInfo = info, withKey = dataKey) => {
      await store.put(key, bytes);
      return readAll(await readObject(store, entry, withKey)).catch((err: Error) => err);
    };
    const flipped = Buffer.from(stored);
    flipped[Math.floor(flipped.length / 2)]! ^= 1;
    // Whichever check meets it first: the chunk's tag, or the manifest's checksum at the end.
    expect(await attempt(flipped)).toMatchObject({ fault: expect.stringMatching(/^(tampered|checksum)$/) });
    expect(await attempt(stored.subarray(0, stored.length - 100))).toMatchObject({
      name: expect.stringMatching(/Error/),
    });
    // Another object's name: its sealing key differs.
    expect(await attempt(stored, { ...info, name: 'postgres/playlists' })).toMatchObject({
      fault: 'tampered',
    });
    expect(await attempt(stored, info, newDataKey())).toMatchObject({ fault: 'tampered' });
    // Unsealed, a changed byte is caught by the manifest's checksum.
    const plainInfo = await writeObject(Readable.from([sample(100)]), {
      store,
      key,
      name: 'postgres/users',
      compression: 'none',
      dataKey: undefined,
    });
    const plain = await readAll(await store.get(key));
    const changed = Buffer.from(plain);
    changed[3]! ^= 1;
    expect(await attempt(changed, plainInfo, undefined)).toMatchObject({ fault: 'checksum' });
    expect(await attempt(plain.subarray(1), plainInfo, undefined)).toMatchObject({ fault: 'size' });
    await store.delete(key);
  });
});
