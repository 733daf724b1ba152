/**
 * Bench (i): the cleanup job's retention of a live table against a single DELETE of the same rows,
 * in one run, for each store (issue 16's first acceptance item):
 *   - PostgreSQL: a table `expiring` (bigint primary key, a timestamptz `at`, payload columns, about
 *     100 bytes of data a row) holding `rows` expired rows and `rows` live ones, interleaved by key:
 *     odd ids expired, even ids live. So every heap page and every leaf page of the primary key holds
 *     both rows the cleanup deletes and rows the writer updates (the worst case for their meeting on
 *     a page), every batch of the walk reads as many live rows as it deletes, and the cost per batch
 *     stays the same over the walk, so the pace settles on one size. No index on `at`: the table as
 *     the brief describes it; the walk goes by primary key, the reference DELETE scans the table.
 *   - MongoDB (FerretDB here): a collection `expiring` of the same shape, `_id` the same integers,
 *     with an index `{ at: 1 }` (as a TTL index would have; `timeIndex: false` leaves it out, and the
 *     job then walks by `_id`).
 * Each side starts from the table or collection built again the same way (untimed; the build's
 * seconds are reported), after a CHECKPOINT of both PostgreSQL clusters and a `sync`:
 *   fleet          a `cleanup` job (policy `olderThanDays: 7`, default batch settings: target 50 ms,
 *                  pause 10 ms, lock timeout 200 ms) on a `bin/dbfleet worker` process of its own,
 *                  started and idle before the clock; wall time from enqueue to result, while a
 *                  writer updates random live rows;
 *   fleet-alone    the same job without the writer;
 *   delete         one `DELETE FROM expiring WHERE at < cutoff` (one `deleteMany`), alone, timed
 *                  around the statement only;
 *   delete-writer  the same single DELETE while the writer runs;
 *   fleet-mixed, delete-mixed
 *                  the job, and the single DELETE, while the writer sends one update in ten to a
 *                  random expired row instead (an app touching a session just past its expiry;
 *                  the update leaves `at` alone, so the row still goes): the only rows where the
 *                  writer and the deletion can meet on a row lock, so what batching spares it.
 * The writer: one connection, single-row `UPDATE ... WHERE id = $1` (`updateOne({_id})`) on random
 * even (live) ids, one after another as fast as it goes, each timed in the bench's process: for
 * `baselineSeconds` before the side starts (its baseline), then until the side ends. Every update
 * of a live row must find it. Lock waits as PostgreSQL sees them: a connection of its own samples
 * `pg_stat_activity` every SAMPLE_MS for client backends waiting, and for those waiting on a
 * heavyweight lock reads the wait's start from `pg_locks.waitstart` (the server's own stamp), so the
 * longest wait is known to within one sampling interval (waits shorter than it may be missed: they are
 * shorter than it). On the tenant's cluster the writer's backend is known by its pid; on FerretDB's
 * PostgreSQL, backends are FerretDB's pool, so waits are reported for any client backend.
 * Checks, outside the clock: before, exactly `rows` rows older than 7 days (the odd ids) and `rows`
 * live (the even ids); after, no odd id and nothing older than the job's cutoff left, and the live
 * ids exactly as before (count and a digest of the ordered ids in PostgreSQL; count and sum of the
 * ids in MongoDB, where nothing inserts so a count that holds means nothing was lost); the job's
 * matched and deleted equal to `rows`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Collection, Document } from 'mongodb';
import pg from 'pg';
import type { Result } from '../queues/index.ts';
import { createClient, type FleetClient } from '../src/client/client.ts';
import { addTenant, tenantStores } from '../src/control/provision.ts';
import { closeDeps, forgetPrefix, type FleetDeps } from '../src/runtime/deps.ts';
import { forgetBenchTenant, median, newDeps, psql, settle } from './common.ts';
import { peakRssMiB, rssMiB } from './proc.ts';
import { startBenchWorker } from './worker.ts';

const ROOT = path.resolve(import.meta.dirname, '..');

export type CleanupStore = 'postgres' | 'mongo';
export type CleanupSide =
  'fleet' | 'fleet-alone' | 'fleet-mixed' | 'delete' | 'delete-writer' | 'delete-mixed';
export const CLEANUP_SIDES: CleanupSide[] = [
  'fleet',
  'fleet-alone',
  'fleet-mixed',
  'delete',
  'delete-writer',
  'delete-mixed',
];
/** Mixed sides: the share of the writer's updates aimed at expired rows. */
const MIXED_EXPIRED_SHARE = 0.1;

export interface CleanupBenchOptions {
  /** Expired rows in the PostgreSQL table, and as many live ones. */
  rows: number;
  /** Expired documents in the MongoDB collection, and as many live ones. */
  docs: number;
  /** Rounds of the sides, each on tables built again; odd rounds the references first. */
  repeat: number;
  stores: CleanupStore[];
  sides: CleanupSide[];
  /** The writer's run before each side that has it. */
  baselineSeconds: number;
  /** The policies' `batch.targetMs`; the default (50 ms) when absent. */
  targetMs?: number;
  /** MongoDB: an index `{ at: 1 }` on the collection (as a TTL index would be), so the job walks by time. */
  timeIndex: boolean;
  /** Names this bench's prefix and tenant. */
  tag: string;
}

const TABLE = 'expiring';
const DAYS = 7;
const DAY_MS = 86_400_000;
const POLICY: Record<CleanupStore, string> = { postgres: 'bench_rows', mongo: 'bench_docs' };
/** How often lock waits are sampled. */
const SAMPLE_MS = 5;
/** Updates slower than this are listed with when they happened. */
const SLOW_MS = 20;
const BATCH = 10_000;
const IN_FLIGHT = 2;
const RSS_SAMPLE_MS = 250;

const r1 = (x: number) => +x.toFixed(1);
const r3 = (x: number) => +x.toFixed(3);

// ---------------------------------------------------------------------------------------------------
// The writer and the lock sampler: each runs from its start (the baseline) to a mark (the side's
// start), then to its stop; figures are kept per phase.

interface Latencies {
  updates: number;
  seconds: number;
  updatesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  over100Ms: number;
}

function latencies(ms: number[], seconds: number): Latencies {
  const sorted = Float64Array.from(ms).sort();
  const at = (q: number) =>
    sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0;
  return {
    updates: ms.length,
    seconds: r3(seconds),
    updatesPerSecond: Math.round(ms.length / seconds),
    p50Ms: r3(at(0.5)),
    p99Ms: r3(at(0.99)),
    p999Ms: r3(at(0.999)),
    maxMs: r3(sorted.at(-1) ?? 0),
    over100Ms: ms.filter((x) => x >= 100).length,
  };
}

export interface WriterFigures {
  baseline: Latencies;
  during: Latencies;
  /** Mixed sides: the updates aimed at expired rows during the side, how many found theirs, the slowest. */
  expired?: { updates: number; found: number; maxMs: number };
  /** The slowest updates during the side: seconds since its start, ms, and whether aimed at an expired row. */
  slowest: { atSeconds: number; ms: number; expired: boolean }[];
}

interface Writer {
  mark(): void;
  stop(): Promise<WriterFigures>;
}

/**
 * Runs `update` on random rows, one after another, until stopped: live rows (even ids, which must be
 * found), and with `expiredShare` of the updates, expired rows (odd ids, which the side may have
 * deleted already), as an app touching a session just past its expiry would.
 */
function startWriter(update: (id: number) => Promise<boolean>, n: number, expiredShare: number): Writer {
  const phases: number[][] = [[], []];
  const slow: { at: number; ms: number; expired: boolean }[] = [];
  const expired = { updates: 0, found: 0, maxMs: 0 };
  let phase = 0;
  let stopped = false;
  let missing = 0;
  const begun = [performance.now(), 0];
  const loop = (async () => {
    while (!stopped) {
      const old = expiredShare > 0 && Math.random() < expiredShare;
      const id = 2 * Math.floor(Math.random() * n) + (old ? 1 : 2);
      const t0 = performance.now();
      const found = await update(id);
      const ms = performance.now() - t0;
      if (!found && !old) missing++;
      phases[phase]!.push(ms);
      if (phase === 1 && old) {
        expired.updates++;
        if (found) expired.found++;
        expired.maxMs = Math.max(expired.maxMs, r1(ms));
      }
      if (phase === 1 && ms >= SLOW_MS) slow.push({ at: t0, ms, expired: old });
    }
  })();
  return {
    mark() {
      begun[1] = performance.now();
      phase = 1;
    },
    async stop() {
      const ended = performance.now();
      stopped = true;
      await loop;
      if (missing > 0) throw new Error(`the writer found ${missing} live rows missing`);
      return {
        baseline: latencies(phases[0]!, (begun[1]! - begun[0]!) / 1000),
        during: latencies(phases[1]!, (ended - begun[1]!) / 1000),
        ...(expiredShare > 0 ? { expired } : {}),
        slowest: slow
          .sort((a, b) => b.ms - a.ms)
          .slice(0, 8)
          .map((x) => ({ atSeconds: r3((x.at - begun[1]!) / 1000), ms: r1(x.ms), expired: x.expired })),
      };
    },
  };
}

export interface LockFigures {
  samples: number;
  /** The sampler's achieved interval, ms (its query takes time too). */
  intervalMs: number;
  /** Heavyweight-lock waits seen: how many distinct waits, and the longest (ms, from pg_locks.waitstart). */
  writerLockWaits: number;
  writerLongestLockWaitMs: number;
  otherLockWaits: number;
  otherLongestLockWaitMs: number;
  /**
   * Samples that found a backend waiting, by `type:event` (everyone else's), and the writer's backend
   * in every sample: waiting (`type:event`), running (`active:cpu`) or between statements (`idle`).
   */
  writerWaitSamples: Record<string, number>;
  otherWaitSamples: Record<string, number>;
}

interface Sampler {
  mark(): void;
  stop(): Promise<{ baseline?: LockFigures; during: LockFigures }>;
}

/** Samples the waits of `url`'s cluster's client backends (the writer's by its pid, when known). */
async function startLockSampler(url: string, writerPid: number | undefined): Promise<Sampler> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  type Phase = {
    samples: number;
    started: number;
    ended: number;
    waits: Map<string, { writer: boolean; ms: number }>;
    events: [Record<string, number>, Record<string, number>];
  };
  const fresh = (): Phase => ({
    samples: 0,
    started: performance.now(),
    ended: 0,
    waits: new Map(),
    events: [{}, {}],
  });
  const phases = [fresh()];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const { rows } = await c.query<{
        pid: number;
        state: string;
        type: string | null;
        event: string | null;
        wait_start: string | null;
        lock_ms: number | null;
      }>(
        `SELECT a.pid, a.state, a.wait_event_type AS type, a.wait_event AS event, l.wait_start::text,
                extract(epoch FROM clock_timestamp() - l.wait_start)::float8 * 1000 AS lock_ms
           FROM pg_stat_activity a
           LEFT JOIN LATERAL (SELECT min(waitstart) AS wait_start FROM pg_locks
                               WHERE pid = a.pid AND NOT granted) l ON true
          WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
            AND (a.pid = $1 OR (a.state = 'active' AND a.wait_event_type IS NOT NULL
                                AND a.wait_event_type NOT IN ('Client', 'Activity')))`,
        [writerPid ?? 0],
      );
      const p = phases.at(-1)!;
      p.samples++;
      for (const r of rows) {
        const writer = r.pid === writerPid;
        // The writer's backend is always listed: running (`active:cpu`), or `idle` between its
        // statements (the time is the client's: the bench, the network).
        const key = r.state !== 'active' ? r.state : r.type === null ? 'active:cpu' : `${r.type}:${r.event}`;
        const events = p.events[writer ? 0 : 1];
        events[key] = (events[key] ?? 0) + 1;
        if (r.type === 'Lock' && r.wait_start !== null && r.lock_ms !== null) {
          const id = `${r.pid}@${r.wait_start}`;
          const seen = p.waits.get(id);
          p.waits.set(id, { writer, ms: Math.max(seen?.ms ?? 0, r.lock_ms) });
        }
      }
      await sleep(SAMPLE_MS);
    }
  })();
  const figures = (p: Phase): LockFigures => {
    const waits = [...p.waits.values()];
    const mine = waits.filter((w) => w.writer).map((w) => w.ms);
    const others = waits.filter((w) => !w.writer).map((w) => w.ms);
    return {
      samples: p.samples,
      intervalMs: r3((p.ended - p.started) / Math.max(1, p.samples)),
      writerLockWaits: mine.length,
      writerLongestLockWaitMs: r1(Math.max(0, ...mine)),
      otherLockWaits: others.length,
      otherLongestLockWaitMs: r1(Math.max(0, ...others)),
      writerWaitSamples: p.events[0],
      otherWaitSamples: p.events[1],
    };
  };
  return {
    mark() {
      phases[0]!.ended = performance.now();
      phases.push(fresh());
    },
    async stop() {
      stopped = true;
      await loop;
      phases.at(-1)!.ended = performance.now();
      await c.end();
      const [a, b] = phases;
      return b ? { baseline: figures(a!), during: figures(b) } : { during: figures(a!) };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// The stores: building the table or collection, counting it, deleting from it, writing to it.

/** What a table or collection holds, read outside the clock. */
interface Holding {
  /** Rows (documents) older than the check's cutoff, and with odd ids. */
  old: number;
  odd: number;
  /** Rows with even ids, and a digest of those ids. */
  live: number;
  liveDigest: string;
}

interface Store {
  name: CleanupStore;
  /** Builds the table or collection again, `n` expired and `n` live; returns its figures. */
  build(n: number): Promise<Record<string, number>>;
  hold(cutoff: Date): Promise<Holding>;
  /** The reference: one statement deleting everything older than the cutoff; how many it deleted. */
  deleteAll(cutoff: Date): Promise<number>;
  /** A writer's connection: its update, and its backend's pid when known. */
  writerConnection(): Promise<{
    update: (id: number) => Promise<boolean>;
    pid?: number;
    close(): Promise<void>;
  }>;
  /** The PostgreSQL cluster whose lock waits tell. */
  clusterUrl: string;
  /** After a side: the table's vacuum figures, when there are any. */
  vacuumState(): Promise<Record<string, unknown> | undefined>;
}

/** `at` for key `i` (1-based) built at `now`: odd keys 8 to 365 days old, even keys 0 to 6 days. */
const ageSeconds = (i: number) =>
  i % 2 === 1 ? 8 * 86_400 + ((i * 48_271) % (357 * 86_400)) : (i * 48_271) % (6 * 86_400);

function postgresStore(deps: FleetDeps, tenant: string, own: pg.Client): Store {
  const { postgresUrl } = deps.tenants.locate(tenant);
  const t = `${tenantStores(deps, tenant).namespace}.${TABLE}`;
  return {
    name: 'postgres',
    clusterUrl: postgresUrl,
    async build(n) {
      const started = performance.now();
      await own.query(`DROP TABLE IF EXISTS ${t}`);
      await own.query(`CREATE TABLE ${t} (
          id bigint PRIMARY KEY, at timestamptz NOT NULL, owner bigint NOT NULL, hits integer NOT NULL,
          kind text NOT NULL, payload text NOT NULL)`);
      // The same ages as the MongoDB documents (ageSeconds), computed in SQL.
      await own.query(
        `INSERT INTO ${t} (id, at, owner, hits, kind, payload)
         SELECT i, now() - CASE WHEN i % 2 = 1 THEN 8 * 86400 + (i * 48271) % (357 * 86400)
                                ELSE (i * 48271) % (6 * 86400) END * interval '1 second',
                1 + (i * 7919) % 100000, 0, (ARRAY['session', 'token', 'upload', 'export'])[1 + i % 4],
                md5(i::text) || md5((i * 31)::text)
           FROM generate_series(1, $1::bigint) i`,
        [2 * n],
      );
      const inserted = performance.now();
      // Hint bits, the visibility map and statistics now, not during a side.
      await own.query(`VACUUM (FREEZE, ANALYZE) ${t}`);
      const { rows } = await own.query<{ bytes: string }>(`SELECT pg_table_size('${t}') AS bytes`);
      return {
        insertSeconds: r3((inserted - started) / 1000),
        vacuumSeconds: r3((performance.now() - inserted) / 1000),
        tableMiB: r1(Number(rows[0]!.bytes) / 2 ** 20),
      };
    },
    async hold(cutoff) {
      const { rows } = await own.query<{ old: string; odd: string; live: string; digest: string }>(
        `SELECT count(*) FILTER (WHERE at < $1) AS old, count(*) FILTER (WHERE id % 2 = 1) AS odd,
                count(*) FILTER (WHERE id % 2 = 0) AS live,
                md5(string_agg(id::text, ',' ORDER BY id) FILTER (WHERE id % 2 = 0)) AS digest
           FROM ${t}`,
        [cutoff],
      );
      const r = rows[0]!;
      return { old: Number(r.old), odd: Number(r.odd), live: Number(r.live), liveDigest: r.digest };
    },
    async deleteAll(cutoff) {
      return (await own.query(`DELETE FROM ${t} WHERE at < $1`, [cutoff])).rowCount ?? 0;
    },
    async writerConnection() {
      const c = new pg.Client({ connectionString: postgresUrl });
      await c.connect();
      const { rows } = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      const query = {
        name: 'bench-writer',
        text: `UPDATE ${t} SET hits = hits + 1, payload = md5(random()::text) || md5(random()::text) WHERE id = $1`,
      };
      return {
        pid: rows[0]!.pid,
        update: async (id) => (await c.query({ ...query, values: [id] })).rowCount === 1,
        close: () => c.end(),
      };
    },
    async vacuumState() {
      const { rows } = await own.query(
        `SELECT n_live_tup, n_dead_tup, n_tup_hot_upd, autovacuum_count, last_autovacuum
           FROM pg_stat_user_tables WHERE relid = '${t}'::regclass`,
      );
      return rows[0] as Record<string, unknown>;
    },
  };
}

function mongoStore(deps: FleetDeps, tenant: string, timeIndex: boolean): Store {
  const db = tenantStores(deps, tenant).mongo;
  const coll = (): Collection => db.collection(TABLE);
  const ferret = process.env.DBFLEET_FERRET_POSTGRES_URL!;
  return {
    name: 'mongo',
    clusterUrl: ferret,
    async build(n) {
      await coll()
        .drop()
        .catch(() => undefined);
      await db.createCollection(TABLE);
      const now = Date.now();
      const started = performance.now();
      const inFlight = new Set<Promise<unknown>>();
      for (let from = 1; from <= 2 * n; from += BATCH) {
        const batch: Document[] = [];
        for (let i = from; i < Math.min(from + BATCH, 2 * n + 1); i++)
          batch.push({
            _id: i,
            at: new Date(now - ageSeconds(i) * 1000),
            owner: 1 + ((i * 7919) % 100_000),
            hits: 0,
            kind: ['session', 'token', 'upload', 'export'][i % 4],
            payload: `${(i * 2_654_435_761).toString(16).padStart(16, '0')}`.repeat(4),
          });
        const p = coll()
          .insertMany(batch, { ordered: false })
          .finally(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
      }
      await Promise.all(inFlight);
      const inserted = performance.now();
      if (timeIndex) await coll().createIndex({ at: 1 });
      const indexed = performance.now();
      psql(ferret, 'VACUUM (ANALYZE)');
      const insertSeconds = (inserted - started) / 1000;
      return {
        insertSeconds: r3(insertSeconds),
        docsPerSecond: Math.round((2 * n) / insertSeconds),
        ...(timeIndex ? { indexSeconds: r3((indexed - inserted) / 1000) } : {}),
        vacuumSeconds: r3((performance.now() - indexed) / 1000),
      };
    },
    async hold(cutoff) {
      const c = coll();
      const [live] = await c
        .aggregate<{ n: number; sum: number }>([
          { $match: { _id: { $mod: [2, 0] } } },
          { $group: { _id: null, n: { $sum: 1 }, sum: { $sum: '$_id' } } },
        ])
        .toArray();
      return {
        old: await c.countDocuments({ at: { $lt: cutoff } }),
        odd: await c.countDocuments({ _id: { $mod: [2, 1] } } as Document),
        live: live?.n ?? 0,
        liveDigest: `sum ${live?.sum ?? 0}`,
      };
    },
    async deleteAll(cutoff) {
      return (await coll().deleteMany({ at: { $lt: cutoff } })).deletedCount;
    },
    async writerConnection() {
      // Its own client with one connection: one update at a time, as the PostgreSQL writer.
      const { MongoClient } = await import('mongodb');
      const client = new MongoClient(deps.tenants.locate(tenant).mongoUrl, { maxPoolSize: 1 });
      await client.connect();
      const c = client.db(db.databaseName).collection(TABLE);
      return {
        update: async (id) =>
          (
            await c.updateOne({ _id: id } as Document, {
              $inc: { hits: 1 },
              $set: { payload: String(Math.random()) },
            })
          ).matchedCount === 1,
        close: () => client.close(),
      };
    },
    vacuumState: () => Promise.resolve(undefined),
  };
}

// ---------------------------------------------------------------------------------------------------
// The sides.

type CleanupResult = Result<'cleanup'>;

interface SideFigures {
  side: CleanupSide;
  startedAt: string;
  loadAverage: number[];
  build: Record<string, number>;
  seconds: number;
  deleted: number;
  writer?: WriterFigures;
  locks?: { baseline?: LockFigures; during: LockFigures };
  vacuum?: Record<string, unknown>;
  /** The fleet's sides. */
  job?: {
    outcome: CleanupResult['policies'][number];
    workMs: number;
    queueMs: number;
    averageBatch: number;
    /** Rows per batch between successive progress reports (at most one a second): the pace. */
    batchSizes: number[];
    workerPeakRssMiB: number;
    workerRssMiBMax: number;
  };
}

interface Bench {
  deps: FleetDeps;
  client: FleetClient;
  tenant: string;
  configFile: string;
  o: CleanupBenchOptions;
}

async function side(b: Bench, store: Store, n: number, which: CleanupSide): Promise<SideFigures> {
  const build = await store.build(n);
  const cutoff = new Date(Date.now() - DAYS * DAY_MS);
  const before = await store.hold(cutoff);
  if (before.old !== n || before.odd !== n || before.live !== n)
    throw new Error(`${store.name} not as built: ${JSON.stringify(before)}`);
  const fleet = which.startsWith('fleet');
  const withWriter = which !== 'fleet-alone' && which !== 'delete';
  const expiredShare = which.endsWith('-mixed') ? MIXED_EXPIRED_SHARE : 0;
  const worker = fleet ? await startBenchWorker(b.deps.prefix, { DBFLEET_CONFIG: b.configFile }) : undefined;
  const startedAt = new Date().toISOString();
  const load0 = loadavg();
  let writerConn: Awaited<ReturnType<Store['writerConnection']>> | undefined;
  let writer: Writer | undefined;
  let sampler: Sampler | undefined;
  const rss: number[] = [];
  let rssTimer: NodeJS.Timeout | undefined;
  try {
    settle(b.deps.tenants.locate(b.tenant).postgresUrl, process.env.DBFLEET_FERRET_POSTGRES_URL);
    if (withWriter) {
      writerConn = await store.writerConnection();
      sampler = await startLockSampler(store.clusterUrl, writerConn.pid);
      writer = startWriter(writerConn.update, n, expiredShare);
      await sleep(b.o.baselineSeconds * 1000);
      writer.mark();
      sampler.mark();
    } else sampler = await startLockSampler(store.clusterUrl, undefined);
    let deleted: number;
    let job: SideFigures['job'];
    const started = performance.now();
    let seconds: number;
    if (worker) {
      const pid = worker.proc.pid!;
      rssTimer = setInterval(() => rss.push(rssMiB(pid)), RSS_SAMPLE_MS);
      const progress: { deleted: number; batches: number }[] = [];
      const enqueued = await b.client.enqueue('cleanup', {
        tenant: b.tenant,
        policies: [POLICY[store.name]],
      });
      await enqueued.onProgress((p) => progress.push(p as { deleted: number; batches: number }));
      const result = await enqueued.waitForResult({ timeoutMs: 6 * 3600_000 });
      seconds = (performance.now() - started) / 1000;
      clearInterval(rssTimer);
      const stored = (await b.client.queue('cleanup').getJob(enqueued.id))!;
      const outcome = result.policies[0]!;
      deleted = outcome.deleted;
      const sizes: number[] = [];
      for (let k = 1; k < progress.length; k++) {
        const dBatches = progress[k]!.batches - progress[k - 1]!.batches;
        if (dBatches > 0)
          sizes.push(Math.round((progress[k]!.deleted - progress[k - 1]!.deleted) / dBatches));
      }
      job = {
        outcome,
        workMs: stored.finishedOn! - stored.processedOn!,
        queueMs: stored.processedOn! - stored.timestamp,
        averageBatch: Math.round(outcome.deleted / Math.max(1, outcome.batches)),
        batchSizes: sizes,
        workerPeakRssMiB: peakRssMiB(pid),
        workerRssMiBMax: Math.max(0, ...rss),
      };
      if (outcome.matched !== n || outcome.deleted !== n)
        throw new Error(`the job did not delete exactly the expired rows: ${JSON.stringify(outcome)}`);
    } else {
      deleted = await store.deleteAll(cutoff);
      seconds = (performance.now() - started) / 1000;
    }
    const writerFigures = await writer?.stop();
    writer = undefined;
    const locks = await sampler.stop();
    sampler = undefined;
    const jobCutoff = job?.outcome.cutoff ? new Date(job.outcome.cutoff) : cutoff;
    const after = await store.hold(jobCutoff);
    if (
      deleted !== n ||
      after.old !== 0 ||
      after.odd !== 0 ||
      after.live !== n ||
      after.liveDigest !== before.liveDigest
    )
      throw new Error(
        `${which} on ${store.name}: deleted ${deleted}, expected ${n}; before ${JSON.stringify(before)}, after ${JSON.stringify(after)}`,
      );
    return {
      side: which,
      startedAt,
      loadAverage: [...load0, ...loadavg()].map((x) => +x.toFixed(2)),
      build,
      seconds: r3(seconds),
      deleted,
      ...(writerFigures ? { writer: writerFigures } : {}),
      locks,
      vacuum: await store.vacuumState(),
      ...(job ? { job } : {}),
    };
  } finally {
    clearInterval(rssTimer);
    await writer?.stop().catch(() => undefined);
    await sampler?.stop().catch(() => undefined);
    await writerConn?.close().catch(() => undefined);
    await worker?.stop();
  }
}

/** One line a side, for the log. */
function brief(s: SideFigures) {
  return {
    side: s.side,
    seconds: s.seconds,
    deleted: s.deleted,
    ...(s.job
      ? {
          batches: s.job.outcome.batches,
          longestBatchMs: s.job.outcome.longestBatchMs,
          averageBatch: s.job.averageBatch,
          workerPeakRssMiB: s.job.workerPeakRssMiB,
        }
      : {}),
    ...(s.writer
      ? {
          writerBaseline: `${s.writer.baseline.updatesPerSecond}/s p99 ${s.writer.baseline.p99Ms} max ${s.writer.baseline.maxMs} ms`,
          writerDuring: `${s.writer.during.updatesPerSecond}/s p99 ${s.writer.during.p99Ms} max ${s.writer.during.maxMs} ms`,
          ...(s.writer.expired ? { writerOnExpired: s.writer.expired } : {}),
        }
      : {}),
    lockWaits: s.locks
      ? `writer ${s.locks.during.writerLockWaits} (longest ${s.locks.during.writerLongestLockWaitMs} ms), others ${s.locks.during.otherLockWaits} (longest ${s.locks.during.otherLongestLockWaitMs} ms)`
      : undefined,
    loadAverage: s.loadAverage,
  };
}

function spread(xs: number[]) {
  return xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) } : undefined;
}

/** Medians and ranges over the rounds, and the ratios of each round. */
function summary(rounds: Partial<Record<CleanupSide, SideFigures>>[]) {
  const of = (side: CleanupSide, f: (s: SideFigures) => number) =>
    spread(rounds.flatMap((r) => (r[side] ? [f(r[side])] : [])));
  const ratio = (a: CleanupSide, b: CleanupSide) =>
    spread(rounds.flatMap((r) => (r[a] && r[b] ? [r3(r[a].seconds / r[b].seconds)] : [])));
  return {
    seconds: Object.fromEntries(CLEANUP_SIDES.map((s) => [s, of(s, (x) => x.seconds)])),
    ratioFleetToDelete: ratio('fleet', 'delete'),
    ratioFleetToDeleteWithWriter: ratio('fleet', 'delete-writer'),
    ratioFleetMixedToDeleteMixed: ratio('fleet-mixed', 'delete-mixed'),
    ratioFleetAloneToDelete: ratio('fleet-alone', 'delete'),
    writer: Object.fromEntries(
      (['fleet', 'delete-writer', 'fleet-mixed', 'delete-mixed'] as const).map((s) => [
        s,
        {
          baselineP99Ms: of(s, (x) => x.writer!.baseline.p99Ms),
          baselineMaxMs: of(s, (x) => x.writer!.baseline.maxMs),
          duringP99Ms: of(s, (x) => x.writer!.during.p99Ms),
          duringMaxMs: of(s, (x) => x.writer!.during.maxMs),
          duringLongestLockWaitMs: of(s, (x) => x.locks!.during.writerLongestLockWaitMs),
          duringLongestLockWaitAnyMs: of(s, (x) =>
            Math.max(x.locks!.during.writerLongestLockWaitMs, x.locks!.during.otherLongestLockWaitMs),
          ),
        },
      ]),
    ),
    jobs: Object.fromEntries(
      (['fleet', 'fleet-alone', 'fleet-mixed'] as const).map((s) => [
        s,
        {
          batches: of(s, (x) => x.job!.outcome.batches),
          averageBatch: of(s, (x) => x.job!.averageBatch),
          longestBatchMs: of(s, (x) => x.job!.outcome.longestBatchMs),
          workerPeakRssMiB: of(s, (x) => x.job!.workerPeakRssMiB),
        },
      ]),
    ),
  };
}

/** The config module the bench's workers load: the demo's, with a retention policy per store. */
async function writeConfig(dir: string, targetMs: number | undefined): Promise<string> {
  const file = path.join(dir, 'dbfleet.config.ts');
  const retention = (['postgres', 'mongo'] as const).map((store) => ({
    name: POLICY[store],
    store,
    target: TABLE,
    timeField: 'at',
    olderThanDays: DAYS,
    // Without `batch`: the defaults (target 50 ms, pause 10 ms, lock timeout 200 ms, first batch 1,000).
    ...(targetMs === undefined ? {} : { batch: { targetMs } }),
  }));
  await writeFile(
    file,
    `import demo from ${JSON.stringify(path.join(ROOT, 'dbfleet.config.ts'))};\n` +
      `export default { ...demo, retention: ${JSON.stringify(retention, null, 2)} };\n`,
  );
  return file;
}

export async function cleanupBench(o: CleanupBenchOptions) {
  const deps = newDeps(`bench-${o.tag}-cl`);
  const tenant = `bench${o.tag}cl`;
  const dir = await mkdtemp(path.join(tmpdir(), 'dbfleet-bench-cleanup-'));
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  const own = new pg.Client({ connectionString: deps.tenants.locate(tenant).postgresUrl });
  try {
    await deps.control.migrate();
    await addTenant(deps, tenant, { migrate: false });
    await own.connect();
    const b: Bench = { deps, client, tenant, configFile: await writeConfig(dir, o.targetMs), o };
    const out: Partial<Record<CleanupStore, unknown>> = {};
    for (const name of o.stores) {
      const store =
        name === 'postgres' ? postgresStore(deps, tenant, own) : mongoStore(deps, tenant, o.timeIndex);
      const n = name === 'postgres' ? o.rows : o.docs;
      const rounds: Partial<Record<CleanupSide, SideFigures>>[] = [];
      for (let i = 1; i <= o.repeat; i++) {
        // Odd rounds the references first, even rounds the fleet first.
        const chosen = CLEANUP_SIDES.filter((s) => o.sides.includes(s));
        const references = chosen.filter((s) => s.startsWith('delete'));
        const fleets = chosen.filter((s) => s.startsWith('fleet'));
        const order = i % 2 === 1 ? [...references, ...fleets] : [...fleets, ...references];
        const round: Partial<Record<CleanupSide, SideFigures>> = {};
        for (const s of order) {
          const figures = await side(b, store, n, s);
          console.log(`(i) ${name} round ${i}/${o.repeat}`, JSON.stringify(brief(figures)));
          round[s] = figures;
        }
        rounds.push(round);
      }
      const sum = summary(rounds);
      console.log(`(i) ${name} summary`, JSON.stringify(sum));
      out[name] = { expired: n, live: n, summary: sum, rounds };
    }
    return {
      table: TABLE,
      olderThanDays: DAYS,
      baselineSeconds: o.baselineSeconds,
      targetMs: o.targetMs ?? 50,
      mongoTimeIndex: o.timeIndex,
      sampleMs: SAMPLE_MS,
      ...out,
    };
  } finally {
    await own.end().catch(() => undefined);
    await client.close();
    await forgetBenchTenant(deps, tenant);
    await forgetPrefix(deps);
    await closeDeps(deps);
    await rm(dir, { recursive: true, force: true });
  }
}
