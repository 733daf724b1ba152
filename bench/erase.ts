/**
 * Bench (h): the erase job against the same erasure written by hand with the drivers, in one run, on
 * one tenant of the demo app at production-like size (by default 1M users, 1M playlists, 3M
 * playlist tracks, 2M consents; 10M listening events, 2M sessions, 1M audit entries):
 *   (a) one subject's erasure, wall time from enqueue to result on a running `bin/dbfleet worker`,
 *       `repeat` times over different subjects, against the hand-written erasure of another subject
 *       (one PostgreSQL transaction deleting children first, then deleteMany/updateMany with the same
 *       filters); with where the fleet's time goes, from the job's own events in Redis, and the
 *       erase path's own reads (src/erase/apply.ts) timed alone beside a plain count by userId;
 *   (b) `subjects` erasures enqueued at once on a worker at concurrency 1, 2 and 4, subjects/s from
 *       the first enqueue to the last result, against `subjects` other hand-written erasures one
 *       after another; and the worker's peak RSS.
 * Every subject's rows are counted before and after its side, outside the clock: deleted locations
 * must hold none of them, anonymised ones exactly as many documents under the subject's pseudonym.
 */
import { randomBytes } from 'node:crypto';
import type { Collection, Document } from 'mongodb';
import pg from 'pg';
import type { Result } from '../queues/index.ts';
import { createClient, type FleetClient } from '../src/client/client.ts';
import { addTenant, tenantStores } from '../src/control/provision.ts';
import { anonymisedValue } from '../src/erase/anonymise.ts';
import { countMongoLocation, countPostgres } from '../src/erase/apply.ts';
import { resolveMap, type MapTarget } from '../src/erase/resolve.ts';
import config from '../dbfleet.config.ts';
import { closeDeps, forgetPrefix, type FleetDeps } from '../src/runtime/deps.ts';
import { forgetBenchTenant, median, newDeps, psql, settle } from './common.ts';
import { peakRssMiB } from './proc.ts';
import { startBenchWorker, type BenchWorker } from './worker.ts';

export interface EraseBenchOptions {
  /** Users in PostgreSQL; each has one playlist of three tracks, two consents, two sessions, one audit entry. */
  users: number;
  /** Listening events, spread evenly over the users. */
  events: number;
  /** Subjects in each bulk round of (b). */
  subjects: number;
  /** Pairs in (a). */
  repeat: number;
  /** Worker concurrencies for (b). */
  concurrencies: number[];
  /** Names this bench's prefix and tenant. */
  tag: string;
}

const r3 = (x: number) => +x.toFixed(3);
const BATCH = 10_000;
const DEVICES = ['ios', 'android', 'web', 'desktop', 'tv'];
const EPOCH = Date.UTC(2024, 0, 1);

/**
 * A multiplier coprime with `n`: `1 + (i * m) % n` then visits every user once per `n` rows, in an
 * order unrelated to insertion, so a user's rows and documents are scattered over the table as a
 * live app's are, and every user has exactly as many as every other.
 */
function stride(n: number): number {
  const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));
  return [7919, 104_729, 1_299_709, 15_485_863].find((p) => gcd(p, n) === 1)!;
}

/** The demo tables, by generate_series, to the migrations' schema and indexes (all in place). */
export async function fillPostgres(
  deps: FleetDeps,
  tenant: string,
  users: number,
): Promise<Record<string, number>> {
  const m = stride(users);
  const owner = (i: string) => `1 + (${i} * ${m}) % ${users}`;
  const at = (i: string) =>
    `timestamptz '2024-01-01 00:00:00+00' + ((${i} * 2654435761) % 31536000) * interval '1 second'`;
  const seconds: Record<string, number> = {};
  await tenantStores(deps, tenant).pg.withClient(async (c) => {
    const timed = async (name: string, sql: string) => {
      const started = performance.now();
      await c.query(sql);
      seconds[name] = r3((performance.now() - started) / 1000);
    };
    await timed(
      'users',
      `INSERT INTO users (id, email, display_name, country, birth_year, created_at, email_domain)
       SELECT i, 'user' || i || '@example.test', 'Listener ' || i,
         (ARRAY['DE','FR','GB','US','BR','JP','IN','NG','SE','ES'])[1 + (i * 7) % 10], 1950 + (i * 13) % 60,
         ${at('i')}, 'example.test'
       FROM generate_series(1, ${users}::bigint) i`,
    );
    await timed(
      'playlists',
      `INSERT INTO playlists (id, user_id, name, is_public, created_at)
       SELECT i, ${owner('i')}, 'Mix ' || i, i % 10 < 3, ${at('i')} FROM generate_series(1, ${users}::bigint) i`,
    );
    await timed(
      'playlist_tracks',
      `INSERT INTO playlist_tracks (playlist_id, position, track_id, added_at)
       SELECT p, k, 'trk' || (p * 31 + k) % 50000, ${at('p * 3 + k')}
       FROM generate_series(1, ${users}::bigint) p, generate_series(1, 3) k`,
    );
    await timed(
      'consent',
      `INSERT INTO consent (user_id, purpose, granted, updated_at)
       SELECT u, purpose, (u + length(purpose)) % 3 = 0, ${at('u')}
       FROM generate_series(1, ${users}::bigint) u, unnest(ARRAY['ads', 'mail']) purpose`,
    );
    // Hint bits, the visibility map and statistics now, not during either side's timing.
    await timed('vacuum', 'VACUUM (FREEZE, ANALYZE) users, playlists, playlist_tracks, consent');
  });
  return seconds;
}

/** The demo collections' documents, row `i` of each (1-based) owned by user `1 + (i * m) % users`. */
const documents = {
  listening_events: (i: number, userId: number): Document => {
    const playedAt = new Date(EPOCH + ((i * 48271) % 31536000) * 1000);
    return {
      _id: `ev${i}`,
      userId,
      trackId: `trk${(i * 31) % 50_000}`,
      playedAt,
      msPlayed: (i * 7919) % 300_000,
      device: DEVICES[i % DEVICES.length],
      day: playedAt.toISOString().slice(0, 10), // what migration 2's backfill adds
    };
  },
  sessions: (i: number, userId: number): Document => {
    const createdAt = new Date(EPOCH + ((i * 48271) % 31536000) * 1000);
    return {
      _id: `s${i}`,
      userId,
      device: DEVICES[i % DEVICES.length],
      createdAt,
      expiresAt: new Date(createdAt.getTime() + 30 * 24 * 3600_000),
    };
  },
  audit_log: (i: number, userId: number): Document => ({
    _id: `a${i}`,
    userId,
    action: 'login',
    at: new Date(EPOCH + ((i * 48271) % 31536000) * 1000),
    ip: `10.${i % 250}.${(i >> 8) % 250}.${(i >> 16) % 250}`,
    userAgent: `Mozilla/5.0 (listener ${userId})`,
  }),
};

/** How many batches of insertMany are in flight at once while filling a collection. */
const IN_FLIGHT = 2;

/** Subjects whose erase path's reads are timed alone (eraseReads). */
const READ_SUBJECTS = 5;

/**
 * `count` documents into a collection of the tenant, in unordered batches of 10,000, IN_FLIGHT at a
 * time, with the collection's secondary indexes (the demo migration's) dropped first and built again
 * after: on FerretDB an insert into the compound index costs several times one without it.
 */
export async function fillCollection(
  deps: FleetDeps,
  tenant: string,
  name: keyof typeof documents,
  count: number,
  users: number,
): Promise<{ documents: number; insertSeconds: number; indexSeconds: number; docsPerSecond: number }> {
  const coll = tenantStores(deps, tenant).mongo.collection(name);
  const indexes = (await coll.listIndexes().toArray()).filter((i) => i.name !== '_id_');
  for (const i of indexes) await coll.dropIndex(i.name as string);
  const m = stride(users);
  const make = documents[name];
  const started = performance.now();
  const inFlight = new Set<Promise<unknown>>();
  for (let from = 1; from <= count; from += BATCH) {
    const batch: Document[] = [];
    for (let i = from; i < Math.min(from + BATCH, count + 1); i++) batch.push(make(i, 1 + ((i * m) % users)));
    const p = coll.insertMany(batch, { ordered: false }).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
    if ((from - 1) % 1_000_000 === 0 && from > 1)
      console.log(`(h) ${name}: ${from - 1} documents in ${r3((performance.now() - started) / 1000)} s`);
  }
  await Promise.all(inFlight);
  const insertSeconds = (performance.now() - started) / 1000;
  const indexed = performance.now();
  for (const i of indexes) await coll.createIndex(i.key as Document, { name: i.name as string });
  const indexSeconds = (performance.now() - indexed) / 1000;
  return {
    documents: count,
    insertSeconds: r3(insertSeconds),
    indexSeconds: r3(indexSeconds),
    docsPerSecond: Math.round(count / insertSeconds),
  };
}

type Collections = Record<keyof typeof documents, Collection>;

/** What each location holds of a set of subjects: the check run before and after each side. */
interface Holdings {
  users: number;
  playlists: number;
  playlist_tracks: number;
  consent: number;
  sessions: number;
  /** Events still under the subjects' ids, and under their pseudonyms. */
  listening_events: number;
  listening_events_pseudonymised: number;
  audit_log: number;
  /** Audit entries under the pseudonyms with ip and userAgent null. */
  audit_log_anonymised: number;
}

/**
 * The bench's own view of the tenant, outside the fleet: a PostgreSQL connection and the
 * collections, for the reference side and for counting.
 */
interface Tenant {
  name: string;
  schema: string;
  pg: pg.Client;
  colls: Collections;
  /** The ledger key the pseudonyms are computed under. */
  key: Buffer;
  /** The subject's pseudonym in userId, as the demo map's `hash` strategy computes it. */
  pseudonym(subject: number): number;
}

/** Counts what `subjects` have in every mapped location (`playlistIds`: theirs, read before). */
async function holdings(t: Tenant, subjects: number[], playlistIds: string[]): Promise<Holdings> {
  const s = t.schema;
  const { rows } = await t.pg.query<Record<string, string>>(
    `SELECT (SELECT count(*) FROM ${s}.users WHERE id = ANY($1::bigint[])) AS users,
            (SELECT count(*) FROM ${s}.playlists WHERE user_id = ANY($1::bigint[])) AS playlists,
            (SELECT count(*) FROM ${s}.playlist_tracks WHERE playlist_id = ANY($2::bigint[])) AS playlist_tracks,
            (SELECT count(*) FROM ${s}.consent WHERE user_id = ANY($1::bigint[])) AS consent`,
    [subjects, playlistIds],
  );
  const pseudonyms = subjects.map((x) => t.pseudonym(x));
  const mine = { userId: { $in: subjects } };
  const theirPseudonyms = { userId: { $in: pseudonyms } };
  return {
    users: Number(rows[0]!.users),
    playlists: Number(rows[0]!.playlists),
    playlist_tracks: Number(rows[0]!.playlist_tracks),
    consent: Number(rows[0]!.consent),
    sessions: await t.colls.sessions.countDocuments(mine),
    listening_events: await t.colls.listening_events.countDocuments(mine),
    listening_events_pseudonymised: await t.colls.listening_events.countDocuments(theirPseudonyms),
    audit_log: await t.colls.audit_log.countDocuments(mine),
    audit_log_anonymised: await t.colls.audit_log.countDocuments({
      ...theirPseudonyms,
      ip: null,
      userAgent: null,
    }),
  };
}

/**
 * Checks a side's work: before, every subject had rows everywhere and none were anonymised yet;
 * after, nothing under their ids, and every event and audit entry they had now under their pseudonym.
 */
async function checkedSide<T>(t: Tenant, subjects: number[], side: () => Promise<T>): Promise<T> {
  const { rows } = await t.pg.query<{ id: string }>(
    `SELECT id FROM ${t.schema}.playlists WHERE user_id = ANY($1::bigint[])`,
    [subjects],
  );
  const playlistIds = rows.map((r) => r.id);
  const before = await holdings(t, subjects, playlistIds);
  const n = subjects.length;
  if (
    before.users !== n ||
    before.playlists < n ||
    before.playlist_tracks < n ||
    before.consent < n ||
    before.sessions < n ||
    before.listening_events < n ||
    before.audit_log < n ||
    before.listening_events_pseudonymised + before.audit_log_anonymised !== 0
  )
    throw new Error(`subjects not as set up: ${JSON.stringify(before)}`);
  const out = await side();
  const after = await holdings(t, subjects, playlistIds);
  const expected: Holdings = {
    users: 0,
    playlists: 0,
    playlist_tracks: 0,
    consent: 0,
    sessions: 0,
    listening_events: 0,
    listening_events_pseudonymised: before.listening_events,
    audit_log: 0,
    audit_log_anonymised: before.audit_log,
  };
  if (JSON.stringify(after) !== JSON.stringify(expected))
    throw new Error(`erasure incomplete: ${JSON.stringify(after)}, expected ${JSON.stringify(expected)}`);
  return out;
}

/**
 * The reference: the demo map's erasure of one subject written by hand. One transaction deleting
 * children first (tracks through the subject's playlists, then playlists, consent, the user), then
 * the MongoDB writes with the map's filters and values. Returns each step's seconds.
 */
async function referenceErase(t: Tenant, subject: number): Promise<Record<string, number>> {
  const s = t.schema;
  const steps: Record<string, number> = {};
  let at = performance.now();
  const step = (name: string) => {
    const now = performance.now();
    steps[name] = r3((now - at) / 1000);
    at = now;
  };
  await t.pg.query('BEGIN');
  try {
    await t.pg.query(
      `DELETE FROM ${s}.playlist_tracks WHERE playlist_id IN (SELECT id FROM ${s}.playlists WHERE user_id = $1)`,
      [subject],
    );
    await t.pg.query(`DELETE FROM ${s}.playlists WHERE user_id = $1`, [subject]);
    await t.pg.query(`DELETE FROM ${s}.consent WHERE user_id = $1`, [subject]);
    await t.pg.query(`DELETE FROM ${s}.users WHERE id = $1`, [subject]);
    await t.pg.query('COMMIT');
  } catch (err) {
    await t.pg.query('ROLLBACK');
    throw err;
  }
  step('postgres');
  const pseudonym = t.pseudonym(subject);
  await t.colls.sessions.deleteMany({ userId: subject });
  step('sessions');
  await t.colls.listening_events.updateMany({ userId: subject }, { $set: { userId: pseudonym } });
  step('listening_events');
  await t.colls.audit_log.updateMany(
    { userId: subject },
    { $set: { userId: pseudonym, ip: null, userAgent: null } },
  );
  step('audit_log');
  return steps;
}

/** referenceErase with its wall time. */
async function timedReference(t: Tenant, subject: number) {
  const started = performance.now();
  const steps = await referenceErase(t, subject);
  return { subject, seconds: r3((performance.now() - started) / 1000), steps };
}

type EraseResult = Result<'erase'>;

interface JobEvent {
  event: string;
  /** Redis's clock (the stream entry's id), epoch ms. */
  at: number;
  phase?: string;
}

/** The job's events as Redis recorded them in the queue's events stream, in order. */
async function jobEvents(deps: FleetDeps, client: FleetClient, jobId: string, sinceMs: number) {
  const key = client.queue('erase').keys.events!;
  const events: JobEvent[] = [];
  for (const [id, fields] of await deps.redis.xrange(key, `${sinceMs}-0`, '+')) {
    const f: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    if (f.jobId !== jobId) continue;
    const phase =
      f.event === 'progress' ? (JSON.parse(f.data ?? '{}') as { phase?: string }).phase : undefined;
    events.push({ event: f.event!, at: Number(id.split('-')[0]), phase });
  }
  return events;
}

/**
 * Where a job's time went, in ms, from its events: waiting to be taken; from being taken to the
 * PostgreSQL transaction's commit (payload checks, the tenant lock, map resolution, the ledger
 * entry, the transaction and its checkpoints); each collection; the verify pass; the finish (ledger
 * completed, checkpoint, audit event, BullMQ's completion); and the result's way back to the caller.
 */
function phasesOf(events: JobEvent[], result: EraseResult, returnedAt: number): Record<string, number> {
  const at = (pred: (e: JobEvent) => boolean) => events.find(pred)?.at ?? NaN;
  const added = at((e) => e.event === 'added');
  const active = at((e) => e.event === 'active');
  const postgres = at((e) => e.phase === 'postgres');
  const mongo = events.filter((e) => e.phase === 'mongo').map((e) => e.at);
  const verify = at((e) => e.phase === 'verify');
  const completed = at((e) => e.event === 'completed');
  const phases: Record<string, number> = { queued: active - added, toPostgresCommit: postgres - active };
  const collections = result.locations.filter((l) => l.store === 'mongo').map((l) => l.name);
  let last = postgres;
  collections.forEach((name, k) => {
    phases[name] = mongo[k]! - last;
    last = mongo[k]!;
  });
  // More reports than collections: the verify pass found rows left and the erase ran again.
  if (mongo.length !== collections.length) phases.erasedTwice = 1;
  Object.assign(phases, {
    verify: verify - last,
    finish: completed - verify,
    returned: returnedAt - completed,
  });
  return phases;
}

/**
 * One subject through the fleet: enqueue, wait for the result. Returns the wall time, the job's
 * queue wait and run time by BullMQ's own stamps, and the split of phasesOf.
 */
async function fleetErase(deps: FleetDeps, client: FleetClient, t: Tenant, subject: number) {
  const sinceMs = Date.now() - 1;
  const started = performance.now();
  const job = await client.enqueue('erase', { tenant: t.name, subject: { id: String(subject) } });
  const result = await job.waitForResult({ timeoutMs: 600_000 });
  const seconds = (performance.now() - started) / 1000;
  const returnedAt = Date.now();
  const stored = (await client.queue('erase').getJob(job.id))!;
  const events = await jobEvents(deps, client, job.id, sinceMs);
  return {
    subject,
    seconds: r3(seconds),
    queueMs: stored.processedOn! - stored.timestamp,
    workMs: stored.finishedOn! - stored.processedOn!,
    phasesMs: phasesOf(events, result, returnedAt),
    result,
  };
}

/** Every result verified, with the work one demo subject has (anonymised: when known). */
function expectVerified(results: EraseResult[], deleted: number, anonymised: number | undefined): void {
  for (const r of results)
    if (!r.verified || r.deleted !== deleted || (anonymised !== undefined && r.anonymised !== anonymised))
      throw new Error(`an erasure did not do the expected work: ${JSON.stringify(r)}`);
}

/**
 * Where the erase's time goes, query by query: the erase path's own reads (src/erase/apply.ts, as
 * the job runs them: the count before each change uses the change's filter, and the verify pass)
 * timed alone for subjects no side touches, beside a plain count of the same documents by
 * `{ userId: <id> }`. Read-only. Milliseconds, medians over the subjects.
 */
async function eraseReads(t: Tenant, mongo: MapTarget['mongo'], subjects: number[]) {
  const target: MapTarget = { pg: t.pg, schema: t.schema, mongo };
  const ms = async (f: () => Promise<unknown>) => {
    const s = performance.now();
    await f();
    return performance.now() - s;
  };
  const samples: Record<string, number[]> = {};
  const add = (name: string, x: number) => (samples[name] ??= []).push(x);
  for (const subject of subjects) {
    const src = { key: t.key, tenant: t.name, subjectId: String(subject) };
    let map!: Awaited<ReturnType<typeof resolveMap>>;
    add(
      'resolveMap',
      await ms(async () => (map = await resolveMap(config.personalData!, target, { tenant: t.name }))),
    );
    // The count before a change and the verify pass after it are the same reading.
    add('postgres count', await ms(() => countPostgres(map, target, src)));
    for (const loc of map.mongo) {
      const coll = t.colls[loc.name as keyof Collections];
      add(`${loc.name} count`, await ms(() => countMongoLocation(loc, map, target, src)));
      add(`${loc.name} plain count by userId`, await ms(() => coll.countDocuments({ userId: subject })));
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, +median(xs).toFixed(1)]));
}

const withoutResult = <T extends { result: unknown }>({ result: _, ...rest }: T) => rest;

/** The median, lowest and highest. */
function spread(xs: number[]) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

export async function eraseBench(o: EraseBenchOptions) {
  // The erase job will not run without a ledger key; the bench's erasures are forgotten with its
  // prefix, so a key of its own serves when none is given (the workers inherit it).
  process.env.DBFLEET_LEDGER_KEYS ??= `bench-1:${randomBytes(32).toString('base64')}`;
  const deps = newDeps(`bench-${o.tag}-er`);
  const tenant = `bench${o.tag}er`;
  const stores = tenantStores(deps, tenant);
  const { postgresUrl } = deps.tenants.locate(tenant);
  const settleBoth = () => settle(postgresUrl, process.env.DBFLEET_FERRET_POSTGRES_URL);
  const ferret = process.env.DBFLEET_FERRET_POSTGRES_URL;
  const vacuum = () => {
    psql(
      postgresUrl,
      `VACUUM (ANALYZE) ${stores.namespace}.users, ${stores.namespace}.playlists,
      ${stores.namespace}.playlist_tracks, ${stores.namespace}.consent`,
    );
    if (ferret) psql(ferret, 'VACUUM (ANALYZE)');
  };
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  // Each waiting job listens for the queue's closing: (b) has `subjects` of them at once.
  client.queue('erase').setMaxListeners(o.subjects + 16);
  const own = new pg.Client({ connectionString: postgresUrl });
  const workers: BenchWorker[] = [];
  try {
    await deps.control.migrate();
    await addTenant(deps, tenant);
    await own.connect();
    const key = deps.ledgerKeys!.key('pseudonym');
    const t: Tenant = {
      name: tenant,
      schema: stores.namespace,
      pg: own,
      key,
      colls: {
        listening_events: stores.mongo.collection('listening_events'),
        sessions: stores.mongo.collection('sessions'),
        audit_log: stores.mongo.collection('audit_log'),
      },
      pseudonym: (subject) =>
        anonymisedValue('hash', 'number', 'userId', { key, tenant, subjectId: String(subject) }) as number,
    };

    // ---- setup, untimed by the comparisons ----
    console.log(`(h) filling tenant ${tenant}: ${o.users} users, ${o.events} listening events`);
    let started = performance.now();
    const postgresSeconds = await fillPostgres(deps, tenant, o.users);
    const fillPostgresSeconds = r3((performance.now() - started) / 1000);
    console.log('(h) PostgreSQL filled', { seconds: fillPostgresSeconds, ...postgresSeconds });
    started = performance.now();
    const mongo = {
      listening_events: await fillCollection(deps, tenant, 'listening_events', o.events, o.users),
      sessions: await fillCollection(deps, tenant, 'sessions', 2 * o.users, o.users),
      audit_log: await fillCollection(deps, tenant, 'audit_log', o.users, o.users),
    };
    if (ferret) psql(ferret, 'VACUUM (ANALYZE)');
    const fillMongoSeconds = r3((performance.now() - started) / 1000);
    console.log('(h) MongoDB filled', { seconds: fillMongoSeconds, ...mongo });
    const setup = {
      users: o.users,
      rows: {
        users: o.users,
        playlists: o.users,
        playlist_tracks: 3 * o.users,
        consent: 2 * o.users,
      },
      documents: { listening_events: o.events, sessions: 2 * o.users, audit_log: o.users },
      fillPostgresSeconds,
      postgresSeconds,
      fillMongoSeconds,
      mongo,
    };

    // Subjects spread evenly over the users, each erased once, by one side only.
    const needed = 2 + 2 * o.repeat + READ_SUBJECTS + o.subjects * (o.concurrencies.length + 1);
    if (needed > o.users) throw new Error(`${needed} subjects needed, only ${o.users} users`);
    const all = Array.from({ length: needed }, (_, k) => 1 + Math.floor((k * o.users) / needed));
    const take = (n: number) => all.splice(0, n);
    // Each subject's work: a user, a playlist, its 3 tracks, 2 consents, 2 sessions deleted; its
    // events and 1 audit entry anonymised (their number known when the events divide evenly).
    const deleted = 1 + 1 + 3 + 2 + 2;
    const anonymised = o.events % o.users === 0 ? o.events / o.users + 1 : undefined;

    // ---- (a) one subject at a time ----
    const worker = await startBenchWorker(deps.prefix);
    workers.push(worker);
    // Untimed warm-ups, one each: the worker's first job opens its connections and compiles the
    // erase path, the reference's first statements are planned; a deployed worker is warm.
    const [warmFleet, warmReference] = take(2) as [number, number];
    const cold = await checkedSide(t, [warmFleet], () => fleetErase(deps, client, t, warmFleet));
    expectVerified([cold.result], deleted, anonymised);
    const coldReference = await checkedSide(t, [warmReference], () => timedReference(t, warmReference));
    console.log('(h) (a) first erasure, untimed', {
      fleetSeconds: cold.seconds,
      fleetPhasesMs: cold.phasesMs,
      reference: coldReference,
    });
    const single: {
      first: string;
      fleet: Omit<Awaited<ReturnType<typeof fleetErase>>, 'result'>;
      reference: { subject: number; seconds: number; steps: Record<string, number> };
      ratio: number;
    }[] = [];
    for (let i = 1; i <= o.repeat; i++) {
      const [fs, rs] = take(2) as [number, number];
      const runFleet = async () => {
        settleBoth();
        return checkedSide(t, [fs], () => fleetErase(deps, client, t, fs));
      };
      const runReference = async () => {
        settleBoth();
        return checkedSide(t, [rs], () => timedReference(t, rs));
      };
      // Odd runs the reference first.
      const reference = i % 2 === 1 ? await runReference() : undefined;
      const fleet = await runFleet();
      const ref = reference ?? (await runReference());
      expectVerified([fleet.result], deleted, anonymised);
      const fleetFigures = withoutResult(fleet);
      const pair = {
        first: i % 2 === 1 ? 'reference' : 'fleet',
        fleet: fleetFigures,
        reference: ref,
        ratio: r3(fleet.seconds / ref.seconds),
      };
      console.log(`(h) (a) run ${i}/${o.repeat}`, JSON.stringify(pair));
      single.push(pair);
    }
    const singleWorkerPeakRssMiB = peakRssMiB(worker.proc.pid!);
    await worker.stop();
    workers.pop();
    const singleSummary = {
      fleetSeconds: spread(single.map((p) => p.fleet.seconds)),
      referenceSeconds: spread(single.map((p) => p.reference.seconds)),
      ratio: spread(single.map((p) => p.ratio)),
      fleetWorkMs: spread(single.map((p) => p.fleet.workMs)),
      fleetQueueMs: spread(single.map((p) => p.fleet.queueMs)),
      workerPeakRssMiB: singleWorkerPeakRssMiB,
    };
    console.log('(h) (a) summary', JSON.stringify(singleSummary));

    const reads = await eraseReads(t, stores.mongo, take(READ_SUBJECTS));
    console.log("(h) (a) the erase path's reads timed alone, ms (medians)", reads);

    // ---- (b) many subjects at once ----
    vacuum();
    const referenceSubjects = take(o.subjects);
    settleBoth();
    const bulkReference = await checkedSide(t, referenceSubjects, async () => {
      const s = performance.now();
      for (const subject of referenceSubjects) await referenceErase(t, subject);
      const seconds = (performance.now() - s) / 1000;
      return { subjects: o.subjects, seconds: r3(seconds), subjectsPerSecond: r3(o.subjects / seconds) };
    });
    console.log('(h) (b) reference, one after another', bulkReference);
    const bulk = [];
    for (const concurrency of o.concurrencies) {
      vacuum();
      const subjects = take(o.subjects);
      const w = await startBenchWorker(deps.prefix, {}, concurrency);
      workers.push(w);
      settleBoth();
      const figures = await checkedSide(t, subjects, async () => {
        const s = performance.now();
        const jobs = await client.enqueueBulk(
          'erase',
          subjects.map((subject) => ({ payload: { tenant, subject: { id: String(subject) } } })),
        );
        const results = await Promise.all(jobs.map((j) => j.waitForResult({ timeoutMs: 3600_000 })));
        const seconds = (performance.now() - s) / 1000;
        expectVerified(results, deleted, anonymised);
        return {
          concurrency,
          subjects: o.subjects,
          seconds: r3(seconds),
          subjectsPerSecond: r3(o.subjects / seconds),
          ratio: r3(o.subjects / seconds / bulkReference.subjectsPerSecond),
          allVerified: results.every((r) => r.verified),
          workerPeakRssMiB: peakRssMiB(w.proc.pid!),
        };
      });
      await w.stop();
      workers.pop();
      console.log(`(h) (b) fleet, concurrency ${concurrency}`, figures);
      bulk.push(figures);
    }
    return {
      setup,
      single: { ...singleSummary, reads, cold: withoutResult(cold), coldReference, runs: single },
      bulk: { reference: bulkReference, fleet: bulk },
    };
  } finally {
    for (const w of workers) await w.stop().catch(() => undefined);
    await client.close();
    await own.end().catch(() => undefined);
    await forgetBenchTenant(deps, tenant);
    await forgetPrefix(deps);
    await closeDeps(deps);
  }
}
