/**
 * load-fixtures against the real services. The same suite runs for a PostgreSQL table and a MongoDB
 * collection wherever the operation is the same.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, vi } from 'vitest';
import { generateFile } from '../demo/generate.ts';
import { eventually, test, type TenantHandle } from './support/fixtures.ts';
import { fileLoad } from './support/loads.ts';

type StoreCase = {
  store: 'postgres' | 'mongo';
  name: string;
  schema: string;
  key: string;
  row: (i: number) => Record<string, unknown>;
  count: (t: TenantHandle) => Promise<number>;
  valueOf: (t: TenantHandle, key: unknown) => Promise<unknown>;
};

const cases: StoreCase[] = [
  {
    store: 'postgres',
    name: 'users',
    schema: 'users',
    key: 'id',
    row: (i) => ({
      id: i,
      email: `u${i}@example.test`,
      display_name: `User ${i}`,
      created_at: '2026-01-01T00:00:00Z',
    }),
    count: (t) =>
      t.pg.withClient(async (c) => Number((await c.query('SELECT count(*) FROM users')).rows[0].count)),
    valueOf: (t, id) =>
      t.pg.withClient(
        async (c) =>
          (await c.query('SELECT display_name FROM users WHERE id = $1', [id])).rows[0]?.display_name,
      ),
  },
  {
    store: 'mongo',
    name: 'sessions',
    schema: 'sessions',
    key: '_id',
    row: (i) => ({
      _id: `s${i}`,
      userId: i,
      device: `User ${i}`,
      createdAt: '2026-01-01',
      expiresAt: '2026-02-01',
    }),
    count: (t) => t.mongo.collection('sessions').countDocuments(),
    valueOf: async (t, id) =>
      (await t.mongo.collection<{ _id: string; device: string }>('sessions').findOne({ _id: String(id) }))
        ?.device,
  },
];

describe.for(cases)('load-fixtures into $store', (c) => {
  const rows = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, k) => c.row(from + k));
  const base = (tenant: string) => ({ tenant, target: { store: c.store, name: c.name }, schema: c.schema });

  test('inserts inline rows and reports exact counts', async ({ client, tenant, startWorker }) => {
    startWorker();
    const job = await client.enqueue('load-fixtures', {
      ...base(tenant.id),
      source: { type: 'inline', rows: rows(1, 250) },
      batchSize: 100,
    });
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 250, loaded: 250, rejected: 0, batches: 3 });
    expect(await c.count(tenant)).toBe(250);
  });

  test('rejects bad rows with line and reason; the good rows land', async ({
    client,
    tenant,
    startWorker,
    deps,
  }) => {
    startWorker();
    const source: unknown[] = rows(1, 10);
    source[2] = { ...rows(3, 3)[0], [c.key === 'id' ? 'id' : 'userId']: 'three' };
    source[6] = 'not even an object';
    const job = await client.enqueue('load-fixtures', {
      ...base(tenant.id),
      source: { type: 'inline', rows: source },
    });
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 10, loaded: 8, rejected: 2 });
    expect(result.sampleRejections.map((r) => r.line)).toEqual([3, 7]);
    expect(result.sampleRejections[0]!.reason).toMatch(/expected number/);
    expect(await deps.control.rejections(job.runId)).toEqual(result.sampleRejections);
    expect(await c.count(tenant)).toBe(8);
  });

  test('upsert updates existing rows by key and inserts new ones', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await (
      await client.enqueue('load-fixtures', {
        ...base(tenant.id),
        source: { type: 'inline', rows: rows(1, 5) },
      })
    ).waitForResult();
    const changed = rows(4, 8).map((r) => ({
      ...r,
      [c.store === 'postgres' ? 'display_name' : 'device']: 'changed',
    }));
    const job = await client.enqueue('load-fixtures', {
      ...base(tenant.id),
      source: { type: 'inline', rows: changed },
      mode: 'upsert',
      key: [c.key],
    });
    expect(await job.waitForResult()).toMatchObject({ loaded: 5, rejected: 0 });
    expect(await c.count(tenant)).toBe(8);
    expect(await c.valueOf(tenant, c.store === 'postgres' ? 5 : 's5')).toBe('changed');
    expect(await c.valueOf(tenant, c.store === 'postgres' ? 2 : 's2')).toBe('User 2');
  });

  test('a missing target fails once, is not retried, and the reason is in the audit log', async ({
    client,
    tenant,
    startWorker,
    deps,
  }) => {
    startWorker();
    const job = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: c.store, name: 'no_such_target' },
      schema: c.schema,
      source: { type: 'inline', rows: rows(1, 1) },
    });
    await expect(job.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(/does not exist/);
    const stored = await client.queue('load-fixtures').getJob(job.id);
    expect(stored!.attemptsMade).toBe(1);
    expect(stored!.failedReason).toMatch(
      /^\[undefined_(table|collection)\] target (table|collection) .*no_such_target does not exist/,
    );
    await vi.waitFor(async () =>
      expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', job.id)).toMatchObject({
        status: 'failed',
        attempts: 1,
        error_code: expect.stringMatching(/^undefined_/),
      }),
    );
  });

  test('a redelivered finished job loads nothing twice', async ({ client, tenant, startWorker }) => {
    startWorker();
    const payload = { ...base(tenant.id), source: { type: 'inline' as const, rows: rows(1, 20) } };
    const job = await client.enqueue('load-fixtures', payload, { idempotencyKey: 'once' });
    await job.waitForResult();
    // Redelivery: the same job id run again (as after a lost acknowledgement).
    const queue = client.queue('load-fixtures');
    const first = await queue.getJob(job.id);
    await first!.retry('completed');
    const again = await eventually(async () => {
      const j = await queue.getJob(job.id);
      return j && j.finishedOn && j.finishedOn > first!.finishedOn! && (await j.getState()) !== 'active'
        ? j
        : undefined;
    });
    // It completed (a second COPY would have failed on the primary key) and skipped every row.
    expect(await again.getState()).toBe('completed');
    expect(again.returnvalue).toMatchObject({ loaded: 20, rejected: 0 });
    expect(await c.count(tenant)).toBe(20);
  });
});

describe('load-fixtures sources and formats', () => {
  test('reads NDJSON, CSV and JSON files and an S3 object', async ({
    client,
    tenant,
    startWorker,
    files,
    deps,
  }) => {
    startWorker();
    await generateFile(path.join(files, 'a.ndjson'), { dataset: 'users', seed: 1, scale: 300 });
    await generateFile(path.join(files, 'b.csv'), {
      dataset: 'playlists',
      seed: 1,
      scale: 50,
      format: 'csv',
    });
    const events = Array.from({ length: 40 }, (_, i) => ({
      _id: `e${i}`,
      userId: 1 + (i % 5),
      trackId: `trk${i}`,
      playedAt: '2026-03-01T10:00:00Z',
      msPlayed: 1000 * i,
      device: 'web',
    }));
    await writeFile(path.join(files, 'c.json'), JSON.stringify(events));
    const key = `tenants/${tenant.id}/sessions.ndjson`;
    await deps.s3.send(
      new PutObjectCommand({
        Bucket: deps.env.DBFLEET_S3_BUCKET,
        Key: key,
        Body: '{"_id":"x1","userId":1,"device":"tv","createdAt":"2026-01-01","expiresAt":"2026-01-02"}\n',
      }),
    );
    const loads = [
      [fileLoad(tenant.id, 'postgres', 'users', path.join(files, 'a.ndjson')), 300],
      [fileLoad(tenant.id, 'postgres', 'playlists', path.join(files, 'b.csv')), 50],
      [fileLoad(tenant.id, 'mongo', 'listening_events', path.join(files, 'c.json')), 40],
      [
        {
          ...fileLoad(tenant.id, 'mongo', 'sessions', ''),
          source: { type: 's3' as const, url: `s3://${deps.env.DBFLEET_S3_BUCKET}/${key}` },
        },
        1,
      ],
    ] as const;
    for (const [payload, loaded] of loads) {
      const job = await client.enqueue('load-fixtures', payload);
      expect(await job.waitForResult(), payload.target.name).toMatchObject({ loaded, rejected: 0 });
    }
    const played = await tenant.mongo.collection('listening_events').findOne({ _id: 'e3' as never });
    expect(played?.playedAt).toBeInstanceOf(Date);
  });

  test('refuses a file outside the allowed roots, permanently', async ({ client, tenant, startWorker }) => {
    startWorker();
    const job = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'mongo', name: 'sessions' },
      source: { type: 'file', path: '/etc/passwd' },
      format: 'csv',
    });
    await expect(job.waitForResult()).rejects.toThrow(/outside the allowed roots/);
  });

  test('refuses an unknown tenant, permanently', async ({ client, startWorker }) => {
    startWorker();
    const job = await client.enqueue('load-fixtures', {
      tenant: 'nobody_here',
      target: { store: 'mongo', name: 'sessions' },
      source: { type: 'inline', rows: [] },
    });
    await expect(job.waitForResult()).rejects.toThrow(/tenant nobody_here does not exist/);
  });

  test('a row PostgreSQL cannot store (text with a NUL character) is rejected with its reason', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    const user = cases[0]!.row;
    const job = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'postgres', name: 'users' },
      schema: 'users',
      source: { type: 'inline', rows: [user(1), { ...user(2), display_name: 'nul\u0000here' }, user(3)] },
    });
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 3, loaded: 2, rejected: 1 });
    expect(result.sampleRejections).toEqual([
      { line: 2, reason: 'display_name: contains a NUL character, which PostgreSQL text cannot hold' },
    ]);
    expect(await cases[0]!.count(tenant)).toBe(2);

    const upsert = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'postgres', name: 'users' },
      schema: 'users',
      mode: 'upsert',
      key: ['id'],
      source: {
        type: 'inline',
        rows: [
          { ...user(1), display_name: 'renamed' },
          { ...user(3), display_name: '\u0000' },
        ],
      },
    });
    expect(await upsert.waitForResult({ timeoutMs: 30_000 })).toMatchObject({
      loaded: 1,
      rejected: 1,
      sampleRejections: [
        { line: 2, reason: 'display_name: contains a NUL character, which PostgreSQL text cannot hold' },
      ],
    });
    expect(await cases[0]!.valueOf(tenant, 1)).toBe('renamed');
  });

  test('a document MongoDB cannot store (a NUL in a field name) is rejected with its reason', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    const doc = (i: number) => ({ _id: `s${i}`, userId: i });
    const job = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'mongo', name: 'sessions' },
      source: { type: 'inline', rows: [doc(1), { ...doc(2), meta: { 'bad\u0000key': 1 } }, doc(3)] },
    });
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 3, loaded: 2, rejected: 1 });
    expect(result.sampleRejections).toEqual([
      { line: 2, reason: 'meta: a field name contains a NUL character, which MongoDB cannot store' },
    ]);
    expect(await tenant.mongo.collection('sessions').countDocuments()).toBe(2);
  });
});
