/**
 * A tenant database's collections out through sealed backup objects and into another database:
 * every document identical, types included, with each collection's indexes.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Binary, BSON, Decimal128, Double, Int32, Long, type Db } from 'mongodb';
import { expect } from 'vitest';
import { newDataKey } from '../src/backup/keys.ts';
import { documentsOut, loadCollection, readMongoShapes } from '../src/backup/mongo-data.ts';
import { readObject, writeObject } from '../src/backup/object-codec.ts';
import { LocalObjectStore } from '../src/storage/local.ts';
import { test } from './support/fixtures.ts';

/** Per collection: count and a digest of every document's BSON bytes, in _id order. */
async function digests(db: Db): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const { name } of await db.listCollections({ type: 'collection' }).toArray()) {
    const hash = createHash('sha256');
    let n = 0;
    for await (const doc of db.collection(name).find({}, { sort: { _id: 1 }, promoteValues: false })) {
      hash.update(BSON.serialize(doc));
      n++;
    }
    out[name] = `${n}:${hash.digest('hex')}`;
  }
  return out;
}

test('every document comes back identical, types and indexes included, in another database', async ({
  tenant,
  deps,
  tmp,
}) => {
  const source = tenant.mongo;
  const target = deps.mongo.db(
    deps.tenants.locate(tenant.id).mongoUrl,
    `${tenant.mongo.databaseName}_restored`,
  );
  const store = new LocalObjectStore(tmp);
  const dataKey = newDataKey();
  await source.collection('sessions').insertMany(
    Array.from({ length: 3000 }, (_, i) => ({
      _id: `s${i}` as never,
      userId: i % 7 === 0 ? new Long(i) : new Int32(i),
      device: i % 5 === 0 ? null : `device ${i} ☃`,
      createdAt: new Date(Date.UTC(2026, 0, 1) + i * 1000),
      score: new Double(i / 3),
      price: Decimal128.fromString(`${i}.10`),
      blob: new Binary(Buffer.from([i % 256, 0, 255])),
      nested: { list: [1, 'two', { three: 3 }], empty: {} },
    })),
  );
  await source.collection('sessions').createIndex({ userId: 1, device: 1 }, { name: 'by_user_device' });
  await source.collection('sessions').createIndex({ createdAt: 1 }, { name: 'by_created', unique: true });
  try {
    const shapes = await readMongoShapes(source);
    const objects = [];
    for (const shape of shapes) {
      const out = documentsOut(source, shape.name);
      const info = await writeObject(out.stream, {
        store,
        key: `b1/mongo/${shape.name}`,
        name: `mongo/${shape.name}`,
        compression: 'zstd',
        dataKey,
      });
      objects.push({ shape, info, documents: out.documents() });
    }
    expect(objects.find((o) => o.shape.name === 'sessions')!.documents).toBe(3000);
    for (const o of objects)
      expect(await loadCollection(target, o.shape, await readObject(store, o.info, dataKey))).toBe(
        o.documents,
      );

    expect(await digests(target)).toEqual(await digests(source));
    const indexes = async (db: Db) =>
      (await db.collection('sessions').listIndexes().toArray())
        .map((i) => ({ name: i.name, key: i.key, unique: i.unique ?? false }))
        .sort((a, b) => a.name.localeCompare(b.name));
    expect(await indexes(target)).toEqual(await indexes(source));
    expect((await indexes(target)).map((i) => i.name)).toEqual(
      expect.arrayContaining(['_id_', 'by_created', 'by_user_device']),
    );
  } finally {
    await target.dropDatabase();
  }
});

test('a collection whose object fails mid-read is an error of the load, not a crash', async ({ tenant }) => {
  const docs = Array.from({ length: 3_000 }, (_, i) => BSON.serialize({ _id: i, n: i }));
  // The first documents arrive, then the read fails (as a chunk that does not authenticate does).
  const failing = new Readable({
    read() {
      if (docs.length > 2_000) this.push(Buffer.concat(docs.splice(0, 500)));
      else this.destroy(new Error('chunk 7 does not authenticate'));
    },
  });
  await expect(
    loadCollection(tenant.mongo, { name: 'half', options: {}, indexes: [] }, failing),
  ).rejects.toThrow('chunk 7 does not authenticate');
});
