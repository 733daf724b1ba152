/**
 * A MongoDB cleanup where the time field has an index: batches are ranges of time, each one
 * deleteMany; an instant holding more documents than a batch is walked by `_id` among them; a batch
 * interrupted between its delete and its checkpoint is found pending and counted once.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect } from 'vitest';
import {
  cleanCollection,
  resolveCollection,
  surveyCollection,
  type MongoProgress,
} from '../src/cleanup/mongo-collection.ts';
import type { RunScope } from '../src/cleanup/outcome.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { test, type TenantHandle } from './support/fixtures.ts';
import { indexTime } from './support/retention.ts';

const DAY = 86_400_000;
const BATCH = 100;

/**
 * 1,000 documents: 450 at one old instant (400 numeric `_id`s, 50 string ones), 200 old ones before
 * it and 200 after it (each its own time, 20 of those before it in 1965 and in 5000 BC), 150 young.
 * The 850 old ones must go.
 */
async function crowded(tenant: TenantHandle) {
  const now = Date.now();
  const instant = new Date(now - 20 * DAY);
  const docs = [
    ...Array.from({ length: 400 }, (_, i) => ({ _id: 1_000 + i * 3, at: instant, old: true })),
    ...Array.from({ length: 50 }, (_, i) => ({ _id: `s${i}`, at: instant, old: true })),
    ...Array.from({ length: 200 }, (_, i) => ({
      _id: 1_001 + i * 3,
      at: new Date(
        i < 10
          ? Date.UTC(1965, 0, 1 + i)
          : i < 20
            ? Date.UTC(-5000, 0, i)
            : instant.getTime() - (i + 1) * 1_000,
      ),
      old: true,
    })),
    ...Array.from({ length: 200 }, (_, i) => ({
      _id: 1_002 + i * 3,
      at: new Date(instant.getTime() + (i + 1) * 1_000),
      old: true,
    })),
    ...Array.from({ length: 150 }, (_, i) => ({ _id: 5_000 + i, at: new Date(now - i * 1_000), old: false })),
  ];
  await tenant.mongo.collection('events').insertMany(docs as never[]);
  await indexTime(tenant);
  const young = docs.filter((d) => !d.old).map((d) => d._id as number);
  return { instant, oldCount: docs.length - young.length, young };
}

function scope(deps: FleetDeps, tenant: TenantHandle): RunScope {
  return {
    tenant: tenant.id,
    runId: randomUUID(),
    dryRun: false,
    cutoff: new Date(Date.now() - 7 * DAY),
    signal: new AbortController().signal,
    throwIfInterrupted: () => undefined,
    log: deps.log,
    progress: async () => undefined,
  };
}

const resolve = (tenant: TenantHandle) =>
  resolveCollection(tenant.mongo, {
    name: 'old_events',
    store: 'mongo',
    target: 'events',
    timeField: 'at',
    olderThanDays: 7,
    batch: { initialSize: BATCH, minSize: BATCH, maxSize: BATCH, pauseMs: 0 },
  });

const remainingIds = async (tenant: TenantHandle) =>
  (
    await tenant.mongo
      .collection('events')
      .find({}, { projection: { _id: 1 } })
      .toArray()
  )
    .map((d) => d._id as unknown as number)
    .sort((a, b) => a - b);

describe('a MongoDB collection walked by its time index', () => {
  test('exactly the old documents go, the crowded instant walked by _id in batches of its own', async ({
    deps,
    tenant,
  }) => {
    const { instant, oldCount, young } = await crowded(tenant);
    const r = await resolve(tenant);
    expect(r.timeIndex).toBe('at_1');
    const saves: MongoProgress[] = [];
    const outcome = await cleanCollection(r, scope(deps, tenant), undefined, undefined, async (p) => {
      saves.push(structuredClone(p));
    });
    expect(outcome).toMatchObject({ matched: oldCount, deleted: oldCount, archived: 0 });
    expect(await remainingIds(tenant)).toEqual(young);
    // Walked by time throughout; the instant's 450 by _id: numbers, then strings (a second walk),
    // then a third from the start that finds nothing.
    expect(saves.every((p) => p.byTime && p.after === null)).toBe(true);
    const crowdSaves = saves.filter((p) => p.byTime!.crowd);
    expect(new Set(crowdSaves.map((p) => p.byTime!.crowd!.at))).toEqual(new Set([instant.toISOString()]));
    expect(Math.max(...crowdSaves.map((p) => p.byTime!.crowd!.walks))).toBe(3);
    // 200 before the instant, 450 at it, 200 after: at least 2 + 5 + 2 batches, none over 100.
    expect(outcome.batches).toBeGreaterThanOrEqual(9);
    expect(outcome.batches).toBeLessThanOrEqual(14);
  });

  /** Where the worker dies: at the save after a batch's delete, or just after the save before it. */
  const crashes = {
    'of a range of times, after its delete': {
      at: (p: MongoProgress) => !p.byTime!.pending && !p.byTime!.crowd && p.outcome.batches === 1,
      saved: false,
    },
    'of a range of times, before its delete': {
      at: (p: MongoProgress) => !!p.byTime!.pending && p.outcome.batches === 1,
      saved: true,
    },
    'of the crowded instant, after its delete': {
      at: (p: MongoProgress) =>
        !!p.byTime!.crowd && !p.byTime!.crowd.pending && p.byTime!.crowd.after !== null,
      saved: false,
    },
    'of the crowded instant, before its delete': {
      at: (p: MongoProgress) => !!p.byTime!.crowd?.pending,
      saved: true,
    },
  };
  test.for(Object.keys(crashes) as (keyof typeof crashes)[])(
    'a batch %s: the retry finds it pending and counts it once',
    async (point, { deps, tenant }) => {
      const { oldCount, young } = await crowded(tenant);
      const r = await resolve(tenant);
      const s = scope(deps, tenant);
      let saved: MongoProgress | undefined;
      const crash = new Error('killed');
      await expect(
        cleanCollection(r, s, undefined, undefined, async (p) => {
          const dies = crashes[point].at(p);
          if (dies && !crashes[point].saved) throw crash;
          saved = structuredClone(p);
          if (dies) throw crash;
        }),
      ).rejects.toBe(crash);
      const pending = saved!.byTime!.crowd?.pending ?? saved!.byTime!.pending;
      expect(pending!.found).toBeGreaterThan(0);
      // The interrupted batch's delete did happen, or did not begin.
      const gone = 1_000 - (await remainingIds(tenant)).length;
      expect(gone).toBe(saved!.outcome.deleted + (crashes[point].saved ? 0 : pending!.found));

      const outcome = await cleanCollection(r, s, undefined, saved, async (p) => {
        saved = structuredClone(p);
      });
      expect(outcome).toMatchObject({ matched: oldCount, deleted: oldCount });
      expect(await remainingIds(tenant)).toEqual(young);
    },
  );

  test('a collection whose expired documents all share one instant: walked by _id among them, then once more', async ({
    deps,
    tenant,
  }) => {
    const at = new Date(Date.now() - 30 * DAY);
    await tenant.mongo
      .collection('events')
      .insertMany([
        ...Array.from({ length: 300 }, (_, i) => ({ _id: i, at })),
        ...Array.from({ length: 5 }, (_, i) => ({ _id: 1_000 + i, at: new Date() })),
      ] as never[]);
    await indexTime(tenant);
    const saves: MongoProgress[] = [];
    const outcome = await cleanCollection(
      await resolve(tenant),
      scope(deps, tenant),
      undefined,
      undefined,
      async (p) => {
        saves.push(structuredClone(p));
      },
    );
    expect(outcome).toMatchObject({ matched: 300, deleted: 300 });
    expect(await remainingIds(tenant)).toEqual([1_000, 1_001, 1_002, 1_003, 1_004]);
    expect(saves.some((p) => p.byTime!.crowd?.at === at.toISOString())).toBe(true);
    // It deleted something, so it walked again from the cutoff, and found nothing.
    expect(saves.at(-1)!.byTime!.walks).toBe(2);
  });
});

describe('MongoDB times the walk by time must not trip on', () => {
  test('times held as arrays of dates, one past the cutoff and one before it: they go (as by _id), and a dry run reads them', async ({
    deps,
    tenant,
  }) => {
    const now = Date.now();
    await tenant.mongo.collection('events').insertMany([
      ...Array.from({ length: 40 }, (_, i) => ({
        _id: i,
        at: [new Date(now - 30 * DAY - i * 1_000), new Date(now + DAY + i)],
      })),
      ...Array.from({ length: 30 }, (_, i) => ({ _id: 100 + i, at: new Date(now - 20 * DAY - i * 1_000) })),
      ...Array.from({ length: 5 }, (_, i) => ({
        _id: 200 + i,
        at: [new Date(now - i * 1_000), new Date(now)],
      })),
    ] as never[]);
    await indexTime(tenant);
    const r = await resolve(tenant);
    const s = scope(deps, tenant);
    const dry = await surveyCollection(r, { ...s, dryRun: true });
    expect(dry).toMatchObject({ matched: 70, oldest: new Date(now - 30 * DAY - 39_000).toISOString() });
    expect(dry.newest).toBe(new Date(now - 20 * DAY).toISOString());
    const outcome = await cleanCollection(r, s, undefined, undefined, async () => undefined);
    expect(outcome).toMatchObject({ matched: 70, deleted: 70 });
    expect(await remainingIds(tenant)).toEqual([200, 201, 202, 203, 204]);
  });

  test('documents at the earliest date JavaScript holds go in batches like any others', async ({
    deps,
    tenant,
  }) => {
    const earliest = new Date(-8.64e15);
    await tenant.mongo
      .collection('events')
      .insertMany([
        ...Array.from({ length: 30 }, (_, i) => ({ _id: i, at: earliest })),
        { _id: 99, at: new Date() },
      ] as never[]);
    await indexTime(tenant);
    const r = await resolveCollection(tenant.mongo, {
      name: 'old_events',
      store: 'mongo',
      target: 'events',
      timeField: 'at',
      olderThanDays: 7,
      batch: { initialSize: 10, minSize: 10, maxSize: 10, pauseMs: 0 },
    });
    const outcome = await cleanCollection(
      r,
      scope(deps, tenant),
      undefined,
      undefined,
      async () => undefined,
    );
    expect(outcome).toMatchObject({ matched: 30, deleted: 30, batches: 3 });
    expect(await remainingIds(tenant)).toEqual([99]);
  });
});
