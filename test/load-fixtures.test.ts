/**
 * load-fixtures against the real services. The same suite runs for a PostgreSQL table and a MongoDB
 * collection wherever the operation is the same.
 */
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { describe, expect, vi } from 'vitest';
import { generateFile } from '../demo/generate.ts';
import { fixtures } from '../demo/fixtures.ts';
import { eventually, test, type TenantHandle } from './support/fixtures.ts';
import { countRows, fileLoad } from './support/loads.ts';
import { deleteKeysUnder } from '../src/redis.ts';

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
    // A source that ends on a batch boundary: no empty batch after the last.
    const exact = await client.enqueue('load-fixtures', {
      ...base(tenant.id),
      source: { type: 'inline', rows: rows(251, 450) },
      batchSize: 100,
    });
    expect(await exact.waitForResult({ timeoutMs: 30_000 })).toMatchObject({ read: 200, batches: 2 });
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

  test('a redelivered finished job loads nothing twice', async ({ client, tenant, startWorker, files }) => {
    startWorker();
    const file = path.join(files, 'rows.ndjson');
    await writeFile(
      file,
      rows(1, 20)
        .map((r) => JSON.stringify(r))
        .join('\n'),
    );
    const payload = { ...base(tenant.id), source: { type: 'file' as const, path: file } };
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
    // It skipped every row (a second COPY would have had every row refused as a duplicate key).
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
      // `read` counts records, not lines: the CSV's header is not one.
      expect(await job.waitForResult(), payload.target.name).toMatchObject({
        read: loaded,
        loaded,
        rejected: 0,
      });
    }
    const played = await tenant.mongo.collection('listening_events').findOne({ _id: 'e3' as never });
    expect(played?.playedAt).toEqual(new Date('2026-03-01T10:00:00Z'));
    // Values, not only counts: the CSV text `false` is false.
    const csv = (await readFile(path.join(files, 'b.csv'), 'utf8')).trim().split('\n');
    const column = csv[0]!.split(',').indexOf('is_public');
    const expected = csv.slice(1).map((line) => line.split(',')[column] === 'true');
    const { rows } = await tenant.pg.withClient((c) =>
      c.query('SELECT is_public FROM playlists ORDER BY id'),
    );
    expect(rows.map((r: { is_public: boolean }) => r.is_public)).toEqual(expected);
    expect(expected).toContain(false);
    expect(expected).toContain(true);
  });

  test('a null expiry stays null; a boolean column refuses text that is not a boolean', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    const session = { _id: 's1', userId: 1, device: 'tv', createdAt: '2026-01-01', expiresAt: null };
    const job = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'mongo', name: 'sessions' },
      schema: 'sessions',
      source: { type: 'inline', rows: [session, { ...session, _id: 's2', createdAt: null }] },
    });
    expect(await job.waitForResult()).toMatchObject({
      loaded: 1,
      rejected: 1,
      sampleRejections: [{ line: 2 }],
    });
    expect(await tenant.mongo.collection('sessions').findOne({ _id: 's1' as never })).toMatchObject({
      expiresAt: null,
      createdAt: new Date('2026-01-01'),
    });
    const consent = { user_id: 1, purpose: 'marketing', updated_at: '2026-01-01' };
    const parsed = fixtures.consent.safeParse({ ...consent, granted: 'no way' });
    expect(parsed.success).toBe(false);
    expect(fixtures.consent.parse({ ...consent, granted: 'f' }).granted).toBe(false);
    expect(fixtures.consent.parse({ ...consent, granted: false }).granted).toBe(false);
  });

  test("sources outside the tenant's folders and S3 prefixes are refused permanently", async ({
    client,
    tenant,
    startWorker,
    files,
    tmp,
    deps,
  }) => {
    startWorker();
    const bucket = deps.env.DBFLEET_S3_BUCKET;
    // Another tenant's folder and object, a link out of the tenant's folder, a folder, odd S3 keys.
    const other = path.join(tmp, 'other_tenant');
    await mkdir(other, { recursive: true });
    await writeFile(path.join(other, 'x.ndjson'), '{"_id":"x"}\n');
    await symlink(path.join(other, 'x.ndjson'), path.join(files, 'link.ndjson'));
    await mkdir(path.join(files, 'folder.ndjson'));
    await deps.s3.send(
      new PutObjectCommand({ Bucket: bucket, Key: 'tenants/other_tenant/x.ndjson', Body: '{"_id":"x"}\n' }),
    );
    const refused: [Record<string, string>, RegExp][] = [
      [{ type: 'file', path: '/etc/passwd' }, /\[source_not_allowed\] .*outside this tenant's folders/],
      [{ type: 'file', path: path.join(other, 'x.ndjson') }, /\[source_not_allowed\]/],
      // Whether a path outside exists is not revealed: missing or not, the answer is the same.
      [{ type: 'file', path: path.join(other, 'missing.ndjson') }, /\[source_not_allowed\]/],
      [{ type: 'file', path: path.join(files, '../other_tenant/x.ndjson') }, /\[source_not_allowed\]/],
      [{ type: 'file', path: path.join(files, 'link.ndjson') }, /\[source_not_allowed\]/],
      [{ type: 'file', path: files }, /\[source_not_allowed\]/],
      [
        { type: 'file', path: path.join(files, 'folder.ndjson') },
        /\[source_not_a_file\] .*not a regular file/,
      ],
      [
        { type: 's3', url: `s3://${bucket}/tenants/other_tenant/x.ndjson` },
        /\[source_not_allowed\] .*S3 prefixes/,
      ],
      [
        { type: 's3', url: `s3://${bucket}/tenants/${tenant.id}/../other_tenant/x.ndjson` },
        /\[source_not_allowed\]/,
      ],
      [{ type: 's3', url: `s3://${bucket}/tenants/${tenant.id}x/x.ndjson` }, /\[source_not_allowed\]/],
      [{ type: 's3', url: `s3://another-bucket/tenants/${tenant.id}/x.ndjson` }, /\[source_not_allowed\]/],
    ];
    for (const [source, reason] of refused) {
      const job = await client.enqueue('load-fixtures', {
        tenant: tenant.id,
        target: { store: 'mongo', name: 'sessions' },
        source: source as { type: 'file'; path: string },
        format: 'ndjson',
      });
      await expect(job.waitForResult(), JSON.stringify(source)).rejects.toThrow(reason);
      expect((await client.queue('load-fixtures').getJob(job.id))!.attemptsMade).toBe(1);
    }
    expect(await tenant.mongo.collection('sessions').countDocuments()).toBe(0);
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

test('inline rows leave the job’s stored data once it has finished, completed or failed', async ({
  client,
  tenant,
  startWorker,
}) => {
  startWorker();
  const row = { _id: 's1', userId: 1, device: 'alice-phone', createdAt: '2026-01-01', expiresAt: null };
  const done = await client.enqueue('load-fixtures', {
    tenant: tenant.id,
    target: { store: 'mongo', name: 'sessions' },
    schema: 'sessions',
    source: { type: 'inline', rows: [row] },
  });
  await done.waitForResult();
  const failed = await client.enqueue('load-fixtures', {
    tenant: tenant.id,
    target: { store: 'mongo', name: 'no_such_collection' },
    source: { type: 'inline', rows: [row] },
  });
  await expect(failed.waitForResult()).rejects.toThrow(/does not exist/);
  const queue = client.queue('load-fixtures');
  // Once BullMQ has recorded the outcome: a delivery repeated before that still has its rows.
  for (const job of [done, failed]) {
    await vi.waitFor(async () => {
      const stored = await queue.getJob(job.id);
      expect(stored!.data.payload.source).toEqual({ type: 'inline', rows: '[redacted]' });
      expect(JSON.stringify(stored!.data)).not.toContain('alice-phone');
    });
  }
  // Retried by an operator, it fails at once, saying why.
  await (await queue.getJob(failed.id))!.retry();
  await vi.waitFor(async () => {
    const again = await queue.getJob(failed.id);
    expect(again!.failedReason).toMatch(
      /^\[payload_redacted\] this load-fixtures job finished and its personal data was removed/,
    );
    expect(await again!.getState()).toBe('failed');
    expect(again!.attemptsMade).toBe(2); // the one attempt after the retry, not retried again
  });
});

describe('load-fixtures run identity', () => {
  test.for(['postgres', 'mongo'] as const)(
    '%s: a reused idempotency key, once its job is removed, starts a new run',
    async (store, { client, tenant, startWorker, deps }) => {
      startWorker();
      const c = cases.find((k) => k.store === store)!;
      const payload = (from: number, to: number) => ({
        tenant: tenant.id,
        target: { store, name: c.name },
        schema: c.schema,
        source: {
          type: 'inline' as const,
          rows: Array.from({ length: to - from + 1 }, (_, k) => c.row(from + k)),
        },
      });
      const first = await client.enqueue('load-fixtures', payload(1, 5), { idempotencyKey: 'nightly' });
      expect(await first.waitForResult()).toMatchObject({ loaded: 5 });
      await (await client.queue('load-fixtures').getJob(first.id))!.remove();

      const second = await client.enqueue('load-fixtures', payload(6, 12), { idempotencyKey: 'nightly' });
      expect(second.id).toBe(first.id);
      expect(second.runId).not.toBe(first.runId);
      expect(await second.waitForResult()).toMatchObject({ read: 7, loaded: 7, rejected: 0, resumedFrom: 0 });
      expect(await c.count(tenant)).toBe(12);
      // The audit log tells the two runs of the one job id apart.
      await vi.waitFor(async () => {
        const { rows } = await deps.control.pool.query(
          `SELECT run_id, status, attempts FROM dbfleet.job_runs WHERE prefix = $1 AND job_id = $2 ORDER BY updated_at`,
          [deps.prefix, first.id],
        );
        expect(rows).toEqual([
          { run_id: first.runId, status: 'completed', attempts: 1 },
          { run_id: second.runId, status: 'completed', attempts: 1 },
        ]);
      });
      expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', first.id)).toMatchObject({
        run_id: second.runId,
      });
      // While the job is there, the same key gives the same job and run.
      const again = await client.enqueue('load-fixtures', payload(20, 21), { idempotencyKey: 'nightly' });
      expect({ id: again.id, runId: again.runId }).toEqual({ id: second.id, runId: second.runId });
    },
  );

  test.for(['postgres', 'mongo'] as const)(
    '%s: job ids that restart after Redis lost its data do not resume an old run',
    async (store, { client, tenant, startWorker, deps }) => {
      startWorker();
      // MongoDB rows without an _id of their own get one derived from the run and line.
      const row = (i: number) =>
        store === 'postgres'
          ? cases[0]!.row(i)
          : { userId: i, device: 'tv', createdAt: new Date(0).toISOString() };
      const payload = (from: number, to: number) => ({
        tenant: tenant.id,
        target: { store, name: store === 'postgres' ? 'users' : 'sessions' },
        ...(store === 'postgres' ? { schema: 'users' } : {}),
        source: {
          type: 'inline' as const,
          rows: Array.from({ length: to - from + 1 }, (_, k) => row(from + k)),
        },
      });
      const first = await client.enqueue('load-fixtures', payload(1, 5));
      expect(await first.waitForResult()).toMatchObject({ loaded: 5 });
      // What Redis held is gone (a restart without persistence): the queue's ids start over.
      await deleteKeysUnder(deps.redis, `${deps.prefix}:load-fixtures`);
      await deleteKeysUnder(deps.redis, `${deps.prefix}:dbfleet:run`);

      const second = await client.enqueue('load-fixtures', payload(6, 12));
      expect(second.id).toBe(first.id);
      expect(await second.waitForResult()).toMatchObject({ read: 7, loaded: 7, rejected: 0, resumedFrom: 0 });
      const total =
        store === 'postgres'
          ? await cases[0]!.count(tenant)
          : await tenant.mongo.collection('sessions').countDocuments();
      expect(total).toBe(12);
    },
  );
});

describe('load-fixtures into MongoDB: keys and duplicates', () => {
  test('values used as keys are values, never query operators', async ({ client, tenant, startWorker }) => {
    startWorker();
    const sessions = tenant.mongo.collection('sessions');
    await sessions.insertMany([1, 2, 3].map((i) => ({ _id: `s${i}`, userId: i, device: 'tv' }) as never));
    const upsert = (key: string[], rows: unknown[]) =>
      client.enqueue('load-fixtures', {
        tenant: tenant.id,
        target: { store: 'mongo', name: 'sessions' },
        mode: 'upsert',
        key,
        source: { type: 'inline', rows },
      });
    const compound = await upsert(
      ['userId', 'device'],
      [
        { userId: { $ne: null }, device: { $ne: null }, note: 'operator' },
        { userId: 2, device: 'tv', note: 'changed' },
      ],
    );
    expect(await compound.waitForResult()).toMatchObject({
      loaded: 1,
      rejected: 1,
      sampleRejections: [
        {
          line: 1,
          reason:
            'userId: a key field must hold a plain value (string, number, boolean or date), not an object or array',
        },
      ],
    });
    const single = await upsert(['userId'], [{ userId: { $gt: 0 } }, { device: 'no key' }]);
    expect(await single.waitForResult()).toMatchObject({
      loaded: 0,
      rejected: 2,
      sampleRejections: [{ line: 1 }, { line: 2, reason: 'userId: the key field is missing' }],
    });
    const insert = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'mongo', name: 'sessions' },
      source: { type: 'inline', rows: [{ _id: { $gt: '' }, userId: 9 }] },
    });
    expect(await insert.waitForResult()).toMatchObject({ loaded: 0, rejected: 1 });
    // A null key would match every document lacking the field; an array holding the key value is not it.
    await sessions.insertMany([
      { _id: 'nokey', device: 'x' },
      { _id: 'list', userId: [1, 2], device: 'tv' },
    ] as never);
    const nullAndArray = await upsert(
      ['userId'],
      [
        { userId: null, note: 'null' },
        { userId: 1, note: 'one' },
      ],
    );
    expect(await nullAndArray.waitForResult()).toMatchObject({
      loaded: 1,
      rejected: 1,
      sampleRejections: [{ line: 1, reason: 'userId: a key field must not be null' }],
    });
    expect(await sessions.countDocuments({ _id: { $in: ['nokey', 'list'] } } as never)).toBe(2);
    await sessions.deleteMany({ _id: { $in: ['nokey', 'list'] } } as never);
    const docs = await sessions
      .find({}, { projection: { _id: 0, userId: 1, note: 1 } })
      .sort({ userId: 1 })
      .toArray();
    expect(docs).toEqual([{ userId: 1, note: 'one' }, { userId: 2, note: 'changed' }, { userId: 3 }]);
  });

  test('a duplicate key rejects that document with its line; the rest land and the job completes', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await tenant.mongo.collection('sessions').insertOne({ _id: 'taken', userId: 0 } as never);
    const doc = (id: string, userId: number) => ({ _id: id, userId, device: 'tv' });
    const job = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'mongo', name: 'sessions' },
      batchSize: 4,
      source: {
        type: 'inline',
        rows: [doc('a', 1), doc('taken', 2), doc('b', 3), doc('a', 4), doc('c', 5), doc('d', 6), doc('d', 7)],
      },
    });
    const result = await job.waitForResult();
    expect(result).toMatchObject({ read: 7, loaded: 4, rejected: 3, batches: 2 });
    expect(result.sampleRejections).toEqual(
      [2, 4, 7].map((line) => ({ line, reason: 'duplicate key (_id or a unique index)' })),
    );
    const docs = await tenant.mongo.collection('sessions').find().sort({ _id: 1 }).toArray();
    expect(docs.map((d) => [d._id, d.userId])).toEqual([
      ['a', 1],
      ['b', 3],
      ['c', 5],
      ['d', 6],
      ['taken', 0],
    ]);
  });
});

describe('load-fixtures keeps personal data out of the fleet’s records', () => {
  test('reasons name the line, field and kind of fault, never the value: results, rejections, failures, audit, logs', async ({
    client,
    tenant,
    files,
    spawnWorker,
    deps,
  }) => {
    const worker = await spawnWorker();
    await tenant.mongo.collection('sessions').createIndex({ device: 1 }, { unique: true });
    await tenant.mongo
      .collection('sessions')
      .insertOne({ _id: 'x', userId: 9, device: 'SECRET-dup' } as never);
    const session = (id: string, device: string) =>
      JSON.stringify({ _id: id, userId: 1, device, createdAt: '2026-01-01', expiresAt: null });
    await writeFile(
      path.join(files, 'sessions.ndjson'),
      [
        session('p1', 'tv'),
        '{"_id":"p2","device":"SECRET-json", broken',
        session('p3', 'SECRET-dup'),
        JSON.stringify({ _id: 'p4', userId: 'SECRET-type', device: 'tv', createdAt: '2026-01-01' }),
      ].join('\n'),
    );
    await writeFile(
      path.join(files, 'playlists.csv'),
      'id,name,is_public\n1,a,true\n2,x"SECRET-csv",false\n3,"b"SECRET-csv,true\n',
    );
    const user = { id: 1, email: 'a@example.test', display_name: 'SECRET-pg', created_at: '0000-01-01' };
    await writeFile(path.join(files, 'users.ndjson'), JSON.stringify(user) + '\n');
    const jobs = [
      fileLoad(tenant.id, 'mongo', 'sessions', path.join(files, 'sessions.ndjson')),
      { ...fileLoad(tenant.id, 'mongo', 'sessions', path.join(files, 'playlists.csv')), schema: undefined },
      fileLoad(tenant.id, 'postgres', 'users', path.join(files, 'users.ndjson')),
    ];
    const seen: string[] = [];
    for (const payload of jobs) {
      const job = await client.enqueue('load-fixtures', payload);
      const outcome = await job.waitForResult().then(
        (result) => ({ result }),
        (err: Error) => ({ failed: err.message }),
      );
      seen.push(JSON.stringify(outcome), JSON.stringify(await deps.control.rejections(job.runId)));
      const stored = await client.queue('load-fixtures').getJob(job.id);
      seen.push(JSON.stringify({ returned: stored!.returnvalue, failedReason: stored!.failedReason }));
    }
    // The loads did see the faults, one line each, named by kind.
    const text = seen.join('\n');
    expect(text).toContain('not valid JSON');
    expect(text).toContain('duplicate key');
    expect(text).toContain('userId: Invalid input: expected number');
    expect(text).toContain('{"line":3,"reason":"malformed CSV (invalid opening quote in column name)"}');
    expect(text).toContain('{"line":4,"reason":"malformed CSV (invalid closing quote in column name)"}');
    expect(text).toMatch(/date\/time value out of range/);

    const audit = await vi.waitFor(async () => {
      const { rows } = await deps.control.pool.query(
        `SELECT error_code, error_message, result_summary FROM dbfleet.job_events WHERE prefix = $1 AND status IN ('completed', 'failed')`,
        [deps.prefix],
      );
      expect(rows).toHaveLength(jobs.length);
      return rows;
    });
    for (const place of [text, JSON.stringify(audit), worker.output()]) {
      expect(place).not.toMatch(/SECRET|0000-01-01/);
    }
  });
});

describe('rows PostgreSQL refuses', () => {
  const user = cases[0]!.row;
  const users = (tenant: TenantHandle) =>
    tenant.pg.withClient(async (c) =>
      (
        await c.query<{ id: string; email: string; display_name: string; birth_year: number | null }>(
          'SELECT id, email, display_name, birth_year FROM users ORDER BY id',
        )
      ).rows.map((r) => ({ ...r, id: Number(r.id) })),
    );
  const sql = (tenant: TenantHandle, text: string) => tenant.pg.withClient((c) => c.query(text));
  /** Users 1 to 3 already there, and a CHECK constraint the fixture schema does not know. */
  const existing = async (tenant: TenantHandle) => {
    await sql(
      tenant,
      `INSERT INTO users (id, email, display_name, created_at)
       SELECT i, 'u' || i || '@example.test', 'User ' || i, '2026-01-01' FROM generate_series(1, 3) i;
       ALTER TABLE users ADD CONSTRAINT users_born_by_2010 CHECK (birth_year <= 2010)`,
    );
  };
  const load = (tenant: string, rows: unknown[], extra: object = {}) => ({
    tenant,
    target: { store: 'postgres' as const, name: 'users' },
    schema: 'users',
    source: { type: 'inline' as const, rows },
    batchSize: 100,
    ...extra,
  });
  const reason = (what: string, names: string) => `refused by PostgreSQL: ${what} (${names})`;
  const outOfRange = reason('date/time value out of range', 'column created_at, SQLSTATE 22008');
  const duplicate = (constraint: string) =>
    reason('duplicate key', `constraint ${constraint}, SQLSTATE 23505`);
  const tooYoung = reason('check constraint failed', 'constraint users_born_by_2010, SQLSTATE 23514');
  /** The values the refused rows held: none may appear in a reason (rows may be personal data). */
  const expectNoValues = (reasons: string[], values: string[]) => {
    for (const r of reasons) for (const v of values) expect(r).not.toContain(v);
  };

  test('insert: each refused row is rejected with its line and reason, the others land', async ({
    client,
    tenant,
    startWorker,
    deps,
  }) => {
    startWorker();
    await existing(tenant);
    const job = await client.enqueue(
      'load-fixtures',
      load(tenant.id, [
        user(4),
        { ...user(5), created_at: '0000-01-01' }, // 22008: year 0 does not exist
        user(6),
        { ...user(1), email: 'again1@example.test' }, // primary key of a row already there
        user(7),
        { ...user(7), email: 'twin7@example.test', display_name: 'Twin' }, // key of line 5
        { ...user(8), birth_year: 2020 }, // the table's CHECK constraint
        { ...user(9), email: 'u2@example.test' }, // unique email of a row already there
        user(10),
        user(11),
      ]),
    );
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 10, loaded: 5, rejected: 5, batches: 1 });
    expect(result.sampleRejections).toEqual([
      { line: 2, reason: outOfRange },
      { line: 4, reason: duplicate('users_pkey') },
      { line: 6, reason: duplicate('users_pkey') },
      { line: 7, reason: tooYoung },
      { line: 8, reason: duplicate('users_email_key') },
    ]);
    expect(await deps.control.rejections(job.runId)).toEqual(result.sampleRejections);
    const named = (i: number, display = `User ${i}`) => ({
      id: i,
      email: `u${i}@example.test`,
      display_name: display,
      birth_year: null,
    });
    expect(await users(tenant)).toEqual([1, 2, 3, 4, 6, 7, 10, 11].map((i) => named(i)));
    expectNoValues(
      result.sampleRejections.map((r) => r.reason),
      ['0000', 'again1', 'twin7', 'Twin', '2020', 'u2@', '"'],
    );
  });

  test('upsert: refused rows are rejected, in the temporary table and in the INSERT', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await existing(tenant);
    const job = await client.enqueue(
      'load-fixtures',
      load(
        tenant.id,
        [
          { ...user(1), display_name: 'Renamed 1' },
          { ...user(4), created_at: '0000-01-01' }, // refused by the COPY into the temporary table
          { ...user(5), email: 'u2@example.test' }, // refused by the INSERT: another row's email
          { ...user(6), birth_year: 2020 }, // refused by the INSERT: the CHECK constraint
          user(7),
          { ...user(2), display_name: 'Renamed 2' },
          { ...user(8), email: 'shared@example.test' },
          { ...user(9), email: 'shared@example.test' }, // the email of line 7
        ],
        { mode: 'upsert', key: ['id'] },
      ),
    );
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 8, loaded: 4, rejected: 4 });
    expect(result.sampleRejections).toEqual([
      { line: 2, reason: outOfRange },
      { line: 3, reason: duplicate('users_email_key') },
      { line: 4, reason: tooYoung },
      { line: 8, reason: duplicate('users_email_key') },
    ]);
    expect((await users(tenant)).map((u) => [u.id, u.email, u.display_name])).toEqual([
      [1, 'u1@example.test', 'Renamed 1'],
      [2, 'u2@example.test', 'Renamed 2'],
      [3, 'u3@example.test', 'User 3'],
      [7, 'u7@example.test', 'User 7'],
      [8, 'shared@example.test', 'User 8'],
    ]);
    expectNoValues(
      result.sampleRejections.map((r) => r.reason),
      ['0000', 'u2@', 'shared', '2020', '"'],
    );
  });

  test('replace: the table is emptied even when rows of its first batch are refused', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await existing(tenant);
    // consent, since TRUNCATE refuses users (other tables reference it).
    const consent = (userId: number, purpose: string, extra: object = {}) => ({
      user_id: userId,
      purpose,
      granted: true,
      updated_at: '2026-01-01',
      ...extra,
    });
    await sql(
      tenant,
      `INSERT INTO consent VALUES (1, 'marketing', false, now()), (2, 'analytics', false, now()),
         (3, 'personalisation', false, now())`,
    );
    const job = await client.enqueue('load-fixtures', {
      ...load(
        tenant.id,
        [
          consent(1, 'marketing'), // was there before: lands, since the table was emptied first
          consent(2, 'analytics', { updated_at: '0000-01-01' }),
          consent(1, 'marketing', { granted: false }), // key of line 1
          consent(99, 'marketing'), // no such user
          consent(3, 'analytics'),
          consent(2, 'personalisation'),
          consent(1, 'marketing', { granted: false }), // key of line 1, in the batch before
        ],
        { mode: 'replace', batchSize: 4 },
      ),
      target: { store: 'postgres', name: 'consent' },
      schema: 'consent',
    });
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 7, loaded: 3, rejected: 4, batches: 2 });
    expect(result.sampleRejections).toEqual([
      { line: 2, reason: reason('date/time value out of range', 'column updated_at, SQLSTATE 22008') },
      { line: 3, reason: duplicate('consent_pkey') },
      { line: 4, reason: reason('foreign key not found', 'constraint consent_user_id_fkey, SQLSTATE 23503') },
      { line: 7, reason: duplicate('consent_pkey') },
    ]);
    const rows = await tenant.pg.withClient(
      async (c) =>
        (await c.query('SELECT user_id::int, purpose, granted FROM consent ORDER BY user_id, purpose')).rows,
    );
    expect(rows).toEqual([
      { user_id: 1, purpose: 'marketing', granted: true },
      { user_id: 2, purpose: 'personalisation', granted: true },
      { user_id: 3, purpose: 'analytics', granted: true },
    ]);
    expectNoValues(
      result.sampleRejections.map((r) => r.reason),
      ['0000', '99', 'marketing', '"'],
    );
  });

  test('a batch whose every row is refused completes, loading nothing', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await existing(tenant);
    const job = await client.enqueue(
      'load-fixtures',
      load(
        tenant.id,
        [1, 2, 3, 1, 2].map((i) => ({ ...user(i), email: `other${i}@example.test` })),
      ),
    );
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 5, loaded: 0, rejected: 5, batches: 1 });
    expect(result.sampleRejections.map((r) => r.line)).toEqual([1, 2, 3, 4, 5]);
    expect(await countRows(tenant, 'users')).toBe(3);
  });

  test('a foreign key is checked at the end of the COPY: the refused rows are found by bisection', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await existing(tenant);
    const playlist = (i: number, userId: number) => ({
      id: i,
      user_id: userId,
      name: `list ${i}`,
      is_public: false,
      created_at: '2026-01-01',
    });
    const missing = new Set([17, 18, 64, 199, 200]); // lines whose user does not exist
    const rows = Array.from({ length: 200 }, (_, k) =>
      playlist(k + 1, missing.has(k + 1) ? 99 : 1 + (k % 3)),
    );
    const job = await client.enqueue('load-fixtures', {
      ...load(tenant.id, rows),
      target: { store: 'postgres', name: 'playlists' },
      schema: 'playlists',
      batchSize: 1000,
    });
    const result = await job.waitForResult({ timeoutMs: 30_000 });
    expect(result).toMatchObject({ read: 200, loaded: 195, rejected: 5 });
    const fk = reason('foreign key not found', 'constraint playlists_user_id_fkey, SQLSTATE 23503');
    expect(result.sampleRejections).toEqual([...missing].map((line) => ({ line, reason: fk })));
    expect(await countRows(tenant, 'playlists')).toBe(195);

    // Every row refused, with nothing in the error to say which: each is tried alone in the end.
    const none = await client.enqueue('load-fixtures', {
      ...load(
        tenant.id,
        Array.from({ length: 7 }, (_, k) => playlist(1000 + k, 99)),
      ),
      target: { store: 'postgres', name: 'playlists' },
      schema: 'playlists',
    });
    expect(await none.waitForResult({ timeoutMs: 30_000 })).toMatchObject({
      read: 7,
      loaded: 0,
      rejected: 7,
      sampleRejections: Array.from({ length: 7 }, (_, k) => ({ line: k + 1, reason: fk })),
    });
    expect(await countRows(tenant, 'playlists')).toBe(195);
  });

  test('a NOT NULL column the fixture schema does not write fails the load, as before', async ({
    client,
    tenant,
    startWorker,
  }) => {
    startWorker();
    await sql(tenant, 'ALTER TABLE users ADD COLUMN plan text NOT NULL');
    const job = await client.enqueue('load-fixtures', load(tenant.id, [user(1), user(2)]));
    await expect(job.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(/not_null_violation|"plan"/);
    expect(await countRows(tenant, 'users')).toBe(0);
  });
});

test('a load clears checkpoints no delivery or retry can need any more, and keeps the rest', async ({
  client,
  tenant,
  startWorker,
}) => {
  startWorker();
  const load = () =>
    client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'postgres', name: 'users' },
      schema: 'users',
      source: { type: 'inline', rows: [] },
    });
  await (await load()).waitForResult();
  const sql = (text: string) => tenant.pg.withClient((c) => c.query(text));
  await sql(`INSERT INTO _dbfleet_load_checkpoints (load_key, progress, updated_at) VALUES
    ('done-15-days', '{"done": true}', now() - interval '15 days'),
    ('done-13-days', '{"done": true}', now() - interval '13 days'),
    ('open-38-days', '{"done": false}', now() - interval '38 days'),
    ('open-36-days', '{"done": false}', now() - interval '36 days')`);
  const second = await load();
  await second.waitForResult();
  const { rows } = await sql('SELECT load_key FROM _dbfleet_load_checkpoints ORDER BY load_key');
  expect(rows.map((r: { load_key: string }) => r.load_key).filter((k: string) => k.includes('-'))).toEqual(
    expect.arrayContaining(['done-13-days', 'open-36-days', second.runId]),
  );
  expect(rows.map((r: { load_key: string }) => r.load_key)).not.toContain('done-15-days');
  expect(rows.map((r: { load_key: string }) => r.load_key)).not.toContain('open-38-days');
});

test('a job queued before run ids resumes from the checkpoint its key names, and records the refusals it carries', async ({
  client,
  tenant,
  startWorker,
  deps,
}) => {
  const user = cases[0]!.row;
  const jobId = 'legacy-load-1';
  const legacyRun = `${deps.prefix}:${jobId}`;
  // What a worker of the version before left: rows 1 and 2 read, row 2 refused by PostgreSQL and
  // counted, its rejection not yet recorded when it died.
  await tenant.pg.withClient(async (c) => {
    await c.query(`CREATE TABLE IF NOT EXISTS _dbfleet_load_checkpoints (
      load_key text PRIMARY KEY, progress jsonb NOT NULL, updated_at timestamptz NOT NULL)`);
    await c.query(
      `INSERT INTO users (id, email, display_name, created_at) VALUES (1, 'u1@example.test', 'User 1', now())`,
    );
    await c.query(`INSERT INTO _dbfleet_load_checkpoints VALUES ($1, $2, now())`, [
      legacyRun,
      JSON.stringify({
        records: 2,
        loaded: 1,
        rejected: 1,
        batches: 1,
        done: false,
        refused: [{ line: 2, reason: 'refused by PostgreSQL: duplicate key' }],
      }),
    ]);
  });
  // As an older producer queued it: no run id in the envelope.
  const rows = [user(1), user(1), user(3), user(4)];
  await client.queue('load-fixtures').add(
    'load-fixtures@x',
    {
      v: 1,
      payload: {
        tenant: tenant.id,
        target: { store: 'postgres', name: 'users' },
        schema: 'users',
        mode: 'insert',
        source: { type: 'inline', rows },
      },
    },
    { jobId, attempts: 1 },
  );
  startWorker();
  const finished = await vi.waitFor(
    async () => {
      const job = await client.queue('load-fixtures').getJob(jobId);
      expect(await job!.getState()).toBe('completed');
      return job!;
    },
    { timeout: 30_000 },
  );
  expect(finished.returnvalue).toMatchObject({ read: 4, loaded: 3, rejected: 1, resumedFrom: 2 });
  expect(await deps.control.rejections(legacyRun)).toEqual([
    { line: 2, reason: 'refused by PostgreSQL: duplicate key' },
  ]);
  expect(await cases[0]!.count(tenant)).toBe(3);
});
