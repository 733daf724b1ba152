/** Cleanup jobs on tables and collections: exactly the expired rows, in batches; dry runs change nothing. */
import { describe, expect } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Long, ObjectId } from 'mongodb';
import { BatchArchive, archivePrefix, readArchive } from '../src/cleanup/archive.ts';
import { cleanCollection, resolveCollection, type MongoProgress } from '../src/cleanup/mongo-collection.ts';
import { defineConfig } from '../src/config/define.ts';
import type { RetentionPolicy } from '../src/config/define.ts';
import { failedAttempts, test } from './support/fixtures.ts';
import { createEvents, digests, events, expired, indexTime } from './support/retention.ts';

const N = 3_000;
const policy = (store: 'postgres' | 'mongo', extra: Partial<RetentionPolicy> = {}): RetentionPolicy =>
  ({
    name: 'old_events',
    store,
    target: 'events',
    timeField: 'at',
    olderThanDays: 7,
    where: { kind: ['a', 'b'] },
    batch: { initialSize: 100, minSize: 50, maxSize: 400, pauseMs: 0 },
    ...extra,
  }) as RetentionPolicy;

describe.each([
  { store: 'postgres', walk: 'key' },
  { store: 'mongo', walk: 'key' },
  { store: 'mongo', walk: 'time' },
] as const)('retention on $store, walked by $walk', ({ store, walk }) => {
  test.override({ config: defineConfig({ retention: [policy(store)] }) });

  test('a dry run counts what a real run then deletes, and changes nothing; the real run takes exactly the expired rows', async ({
    tenant,
    spareTenant,
    client,
    startWorker,
  }) => {
    const rows = events(N);
    await createEvents(tenant, store, rows);
    const bystander = await spareTenant();
    await createEvents(bystander, store, rows);
    if (walk === 'time') for (const t of [tenant, bystander]) await indexTime(t);
    const before = await digests(tenant, store);
    const doomed = expired(rows, 7, ['a', 'b']);
    expect(doomed.length).toBeGreaterThan(1_000);
    startWorker();

    const dry = await (
      await client.enqueue('cleanup', { tenant: tenant.id, dryRun: true })
    ).waitForResult({
      timeoutMs: 60_000,
    });
    const times = doomed.map((r) => r.at!.getTime()).sort((a, b) => a - b);
    expect(dry.policies).toEqual([
      {
        name: 'old_events',
        store,
        dryRun: true,
        matched: doomed.length,
        deleted: 0,
        archived: 0,
        batches: 0,
        longestBatchMs: 0,
        oldest: expect.any(String),
        newest: expect.any(String),
        cutoff: expect.any(String),
      },
    ]);
    expect(Date.parse(dry.policies[0]!.oldest!)).toBe(times[0]);
    expect(Date.parse(dry.policies[0]!.newest!)).toBe(times.at(-1));
    expect(await digests(tenant, store)).toEqual(before);

    const real = await (
      await client.enqueue('cleanup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 60_000 });
    const [outcome] = real.policies;
    expect(outcome).toMatchObject({
      name: 'old_events',
      store,
      dryRun: false,
      matched: doomed.length,
      deleted: doomed.length,
      archived: 0,
    });
    expect(outcome!.batches).toBeGreaterThanOrEqual(Math.ceil(doomed.length / 400));
    expect(outcome!.longestBatchMs).toBeGreaterThan(0);

    // Exactly the expired rows of kinds a and b went; every other row is as it was.
    const after = await digests(tenant, store);
    const gone = new Set(doomed.map((r) => r.id));
    expect([...after.keys()]).toEqual(rows.map((r) => r.id).filter((id) => !gone.has(id)));
    for (const [id, digest] of after) expect(digest).toBe(before.get(id));
    expect(await digests(bystander, store)).toEqual(before);

    // Once more: nothing left to take.
    const again = await (
      await client.enqueue('cleanup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(again.policies[0]).toMatchObject({ matched: 0, deleted: 0 });
  });

  describe('a policy naming a table or field that is not there', () => {
    test.override({
      config: defineConfig({
        retention: [
          policy(store, { name: 'fine', target: 'other_events' }),
          policy(store, { name: 'missing', target: 'no_such_events' }),
        ],
      }),
    });
    test('fails at once, naming it, with nothing deleted by the policies before it', async ({
      tenant,
      deps,
      client,
      startWorker,
    }) => {
      await createEvents(tenant, store, events(200), 'other_events');
      const before = await digests(tenant, store, 'other_events');
      startWorker();
      const job = await client.enqueue('cleanup', { tenant: tenant.id });
      await expect(job.waitForResult({ timeoutMs: 60_000 })).rejects.toThrow(
        `${store} no_such_events (policy missing): no such ${store === 'postgres' ? 'table' : 'collection'}`,
      );
      expect(await digests(tenant, store, 'other_events')).toEqual(before);
      expect(await failedAttempts(deps)).toEqual([{ attempt: 1, error_code: 'policy_mismatch' }]);
    });
  });
});

describe('a MongoDB batch interrupted between its delete and its checkpoint', () => {
  test('the retry finds it pending, deletes its range again, and counts it once; its archive keeps every document', async ({
    deps,
    tenant,
  }) => {
    const rows = events(1_000);
    await createEvents(tenant, 'mongo', rows);
    const doomed = expired(rows, 7, ['a', 'b', 'c']);
    const p = policy('mongo', {
      where: undefined,
      archive: true,
      batch: { initialSize: 100, minSize: 100, maxSize: 100, pauseMs: 0 },
    });
    const r = await resolveCollection(tenant.mongo, p as Parameters<typeof resolveCollection>[1]);
    const runId = randomUUID();
    const scope = {
      tenant: tenant.id,
      runId,
      dryRun: false,
      cutoff: new Date(Date.now() - 7 * 86_400_000),
      signal: new AbortController().signal,
      throwIfInterrupted: () => undefined,
      log: deps.log,
      progress: async () => undefined,
    };
    const archive = await BatchArchive.open({
      objects: deps.objects,
      keys: deps.backupKeys,
      tenant: tenant.id,
      runId,
      policy: 'old_events',
      store: 'mongo',
      target: 'events',
    });
    // The third batch's delete happens; the worker dies before it records that.
    let saved: MongoProgress | undefined;
    const crash = new Error('killed');
    await expect(
      cleanCollection(r, scope, archive, undefined, async (progress) => {
        if (!progress.pending && progress.outcome.batches === 3) throw crash;
        saved = structuredClone(progress);
      }),
    ).rejects.toBe(crash);
    expect(saved!.pending).toMatchObject({ found: 100, seq: 2 });
    expect(await tenant.mongo.collection('events').countDocuments()).toBe(1_000 - 300);

    const outcome = await cleanCollection(r, scope, archive, saved, async (progress) => {
      saved = structuredClone(progress);
    });
    expect(outcome).toMatchObject({
      matched: doomed.length,
      deleted: doomed.length,
      archived: doomed.length,
    });
    const archived: number[] = [];
    for await (const batch of readArchive(
      deps.objects,
      deps.backupKeys!,
      archivePrefix(tenant.id, runId, 'old_events'),
    ))
      for (const line of batch.lines)
        archived.push(
          (JSON.parse(line) as { _id: { $numberInt: string } })._id.$numberInt as unknown as number,
        );
    expect(archived.map(Number).sort((a, b) => a - b)).toEqual(doomed.map((d) => d.id));
  });
});

describe('retention beside migrations', () => {
  test.override({ config: defineConfig({ retention: [policy('postgres')] }) });

  test("a table's cleanup waits while the tenant's PostgreSQL migration lock is held, then runs", async ({
    tenant,
    client,
    startWorker,
  }) => {
    const rows = events(500);
    await createEvents(tenant, 'postgres', rows);
    const before = await digests(tenant, 'postgres');
    const doomed = expired(rows, 7, ['a', 'b']);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    // A migration of the tenant, holding its lock exclusively until told to stop.
    const migration = tenant.pg.withClient(async (c) => {
      await c.query(`SELECT pg_advisory_lock(hashtext('dbfleet.migrate'), hashtext($1))`, [tenant.pg.schema]);
      await released;
      await c.query(`SELECT pg_advisory_unlock(hashtext('dbfleet.migrate'), hashtext($1))`, [
        tenant.pg.schema,
      ]);
    });
    startWorker();
    const job = await client.enqueue('cleanup', { tenant: tenant.id });
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await digests(tenant, 'postgres')).toEqual(before);
    release();
    await migration;
    const result = await job.waitForResult({ timeoutMs: 60_000 });
    expect(result.policies[0]).toMatchObject({ deleted: doomed.length });
  });
});

describe('MongoDB _ids of several types in one collection', () => {
  test.override({
    config: defineConfig({
      retention: [
        {
          name: 'old_events',
          store: 'mongo',
          target: 'mixed',
          timeField: 'at',
          olderThanDays: 7,
          batch: { initialSize: 4, minSize: 4, maxSize: 4, pauseMs: 0 },
        },
      ],
    }),
  });

  test('numbers, strings, ObjectIds and dates: exactly the expired ones go, each counted once', async ({
    tenant,
    client,
    startWorker,
  }) => {
    const old = new Date(Date.now() - 30 * 86_400_000);
    const young = new Date();
    const ids: unknown[] = [
      ...[1, 2, 3, 4, 5, 6.5, Long.fromString('9007199254740993')],
      ...['a', 'b', 'c', 'd', 'e'],
      ...Array.from({ length: 5 }, () => new ObjectId()),
      ...[1, 2, 3, 4, 5].map((d) => new Date(Date.UTC(2020, 0, d))),
    ];
    // Every other document expired, in each type.
    const docs = ids.map((_id, i) => ({ _id, at: i % 2 === 0 ? old : young, i }));
    await tenant.mongo.collection('mixed').insertMany(docs as never[]);
    const expiredIs = docs.filter((d) => d.at === old).map((d) => d.i);
    startWorker();
    const dry = await (await client.enqueue('cleanup', { tenant: tenant.id, dryRun: true })).waitForResult();
    expect(dry.policies[0]!.matched).toBe(expiredIs.length);
    const real = await (await client.enqueue('cleanup', { tenant: tenant.id })).waitForResult();
    expect(real.policies[0]).toMatchObject({ matched: expiredIs.length, deleted: expiredIs.length });
    const left = (await tenant.mongo.collection('mixed').find().toArray())
      .map((d) => d.i as number)
      .sort((a, b) => a - b);
    expect(left).toEqual(docs.filter((d) => d.at === young).map((d) => d.i));
  });
});
