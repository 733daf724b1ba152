/** One contract suite for both object stores: S3 (s3rver here) and a local folder. */
import { Readable } from 'node:stream';
import { randomBytes, createHash } from 'node:crypto';
import { describe, expect } from 'vitest';
import { LocalObjectStore } from '../src/storage/local.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { S3ObjectStore } from '../src/storage/s3.ts';
import { test, uniqueId } from './support/fixtures.ts';

const stores: {
  name: string;
  open: (deps: FleetDeps, tmp: string) => ObjectStore;
}[] = [
  { name: 's3', open: (deps) => new S3ObjectStore(deps.s3, deps.env.DBFLEET_S3_BUCKET) },
  { name: 'local', open: (_deps, tmp) => new LocalObjectStore(tmp) },
];

const digest = async (stream: Readable) => {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
};

describe.for(stores)('$name object store', ({ open }) => {
  test('put, head, get, list and delete', async ({ deps, tmp }) => {
    const store = open(deps, tmp);
    const prefix = `${uniqueId('objects-')}/`;
    await store.put(`${prefix}a.txt`, 'hello');
    await store.put(`${prefix}b/c.txt`, Buffer.from('world!'));
    expect(await store.head(`${prefix}a.txt`)).toEqual({ key: `${prefix}a.txt`, size: 5 });
    expect(await store.head(`${prefix}missing`)).toBeNull();
    expect(await digest(await store.get(`${prefix}b/c.txt`))).toBe(
      createHash('sha256').update('world!').digest('hex'),
    );
    const listed: string[] = [];
    for await (const o of store.list(prefix)) listed.push(o.key);
    expect(listed.sort()).toEqual([`${prefix}a.txt`, `${prefix}b/c.txt`]);
    await store.delete(`${prefix}a.txt`);
    expect(await store.head(`${prefix}a.txt`)).toBeNull();
    await store.delete(`${prefix}b/c.txt`);
  });

  test('streams a body larger than one multipart part, intact', async ({ deps, tmp }) => {
    const store = open(deps, tmp);
    const key = `${uniqueId('big-')}/blob.bin`;
    const parts = Array.from({ length: 20 }, () => randomBytes(1024 * 1024)); // 20 MiB: three 8 MiB parts
    const expected = createHash('sha256');
    for (const p of parts) expected.update(p);
    await store.put(key, Readable.from(parts));
    expect((await store.head(key))?.size).toBe(20 * 1024 * 1024);
    expect(await digest(await store.get(key))).toBe(expected.digest('hex'));
    await store.delete(key);
  });
});

test('a local store refuses keys that escape its folder', async ({ tmp }) => {
  const store = new LocalObjectStore(tmp);
  await expect(store.put('../outside.txt', 'x')).rejects.toThrow(/escapes the storage folder/);
});
