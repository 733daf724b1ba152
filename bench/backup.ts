/**
 * Bench (g): backup and restore of one tenant against the tools a user would otherwise reach for,
 * side by side in one run, on the same tenant, the same disk and services:
 *   (a) PostgreSQL backup: the backup job (stores ['postgres'], to the local folder) in a worker
 *       process of its own vs `pg_dump -Fc -n <schema>` to a file: wall time and bytes written;
 *       once more to S3 (s3rver) beside one more pg_dump;
 *   (b) PostgreSQL restore: the restore job into a new tenant (deep verify first, then staging and
 *       swap) vs `pg_restore -j 2` into a database created for it;
 *   (c) MongoDB: the backup job (stores ['mongo']) vs `mongodump --archive --gzip`, the restore job
 *       into a new tenant vs `mongorestore --archive --gzip --nsFrom/--nsTo` into a new database;
 *   (d) the worker's peak RSS (VmHWM) over a backup and a restore of both stores.
 * Each pair runs `repeat` times, which side goes first alternating; every timed side starts after a
 * CHECKPOINT of both PostgreSQL clusters and a `sync`.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { PayloadInput } from '../queues/index.ts';
import { addTenant, tenantStores } from '../src/control/provision.ts';
import { closeDeps, forgetPrefix, type FleetDeps } from '../src/runtime/deps.ts';
import { generateFile } from '../demo/generate.ts';
import { forgetBenchTenant, median, newDeps, psql, settle } from './common.ts';
import { batches, vacuumMongo } from './mongo-load.ts';
import { timedJob, type TimedJob } from './worker.ts';

const run = promisify(execFile);

export interface BackupBenchOptions {
  /** Rows in PostgreSQL, spread evenly over the four demo tables. */
  rows: number;
  /** Documents in MongoDB (listening_events). */
  docs: number;
  repeat: number;
  /** false: only (d), the memory runs (for the large sizes). */
  pairs: boolean;
  /** A scratch folder on the disk under test: backups, dumps and archives go there. */
  dir: string;
  /** Names this bench's prefix, tenants and databases. */
  tag: string;
}

/** The demo tables filled with `rows` rows in all, a quarter each, by generate_series. */
export async function fillPostgres(deps: FleetDeps, tenant: string, rows: number): Promise<void> {
  const q = Math.floor(rows / 4);
  const at = (i: string) =>
    `timestamptz '2024-01-01 00:00:00+00' + ((${i} * 2654435761) % 31536000) * interval '1 second'`;
  await tenantStores(deps, tenant).pg.withClient(async (c) => {
    await c.query(`INSERT INTO users (id, email, display_name, country, birth_year, created_at, email_domain)
      SELECT i, 'user' || i || '@example.test', 'Listener ' || i,
        (ARRAY['DE','FR','GB','US','BR','JP','IN','NG','SE','ES'])[1 + (i * 7) % 10], 1950 + (i * 13) % 60,
        ${at('i')}, 'example.test'
      FROM generate_series(1, ${q}::bigint) i`);
    await c.query(`INSERT INTO playlists (id, user_id, name, is_public, created_at)
      SELECT i, 1 + (i * 7919) % ${q}, 'Mix ' || i, i % 10 < 3, ${at('i')}
      FROM generate_series(1, ${q}::bigint) i`);
    await c.query(`INSERT INTO playlist_tracks (playlist_id, position, track_id, added_at)
      SELECT 1 + (i - 1) % ${q}, 1 + (i - 1) / ${q}, 'trk' || (i * 31) % 50000, ${at('i')}
      FROM generate_series(1, ${rows - 3 * q}::bigint) i`);
    await c.query(`INSERT INTO consent (user_id, purpose, granted, updated_at)
      SELECT 1 + (i - 1) / 2, CASE WHEN i % 2 = 0 THEN 'ads' ELSE 'mail' END, i % 3 = 0, ${at('i')}
      FROM generate_series(1, ${q}::bigint) i`);
    // Hint bits and the visibility map set now, not by whichever side reads the rows first.
    await c.query('VACUUM (FREEZE, ANALYZE) users, playlists, playlist_tracks, consent');
  });
}

/**
 * `docs` demo listening events (bench (f)'s generator and fixture schema), inserted two batches at a
 * time with the demo's compound index dropped, and built again once they are in.
 */
export async function fillMongo(deps: FleetDeps, tenant: string, docs: number, dir: string): Promise<void> {
  const file = path.join(dir, 'listening_events.ndjson');
  await generateFile(file, { dataset: 'listening_events', seed: 11, scale: docs });
  const events = tenantStores(deps, tenant).mongo.collection('listening_events');
  await events.dropIndex('userId_1_playedAt_1');
  const inFlight = new Set<Promise<unknown>>();
  for await (const batch of batches(file)) {
    const p = events.insertMany(batch, { ordered: false }).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= 2) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await events.createIndex({ userId: 1, playedAt: 1 });
  await rm(file);
  vacuumMongo();
}

/** Seconds a command takes, start to exit. */
async function timedCommand(command: string, args: string[]): Promise<number> {
  const started = performance.now();
  await run(command, args, { maxBuffer: 64 * 1024 * 1024 });
  return (performance.now() - started) / 1000;
}

/** The same URL on another database of the same server. */
function databaseUrl(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

const DEMO_TABLES = ['users', 'playlists', 'playlist_tracks', 'consent'];

/** Rows in the demo tables of `schema`, in all. */
function pgRows(url: string, schema: string): number {
  return Number(
    psql(url, `SELECT ${DEMO_TABLES.map((t) => `(SELECT count(*) FROM ${schema}.${t})`).join(' + ')}`),
  );
}

/** Seconds since the start at which each phase made its last progress report. */
function phaseEnds(progress: TimedJob<'backup' | 'restore'>['progress']): Record<string, number> {
  const ends: Record<string, number> = {};
  for (const p of progress) {
    const phase = (p.data as { phase?: string } | undefined)?.phase;
    if (phase) ends[phase] = +p.seconds.toFixed(2);
  }
  return ends;
}

/**
 * The worker's RSS at the job's start and at each quarter of it: memory that grows with the data
 * grows through the run, where a young generation filling up levels off in its first seconds.
 */
function rssCourse(samples: number[]): number[] {
  if (samples.length === 0) return [];
  return [0, 0.25, 0.5, 0.75, 1].map((f) => samples[Math.round(f * (samples.length - 1))]!);
}

interface Side {
  seconds: number;
}

const r3 = (x: number) => +x.toFixed(3);

/** The median, lowest and highest of the runs' figures. */
function spread(xs: number[]) {
  return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/** Runs the reference and the fleet's side in the order run `i` says: odd runs the reference first. */
async function inOrder<R extends Side, F extends Side>(
  i: number,
  reference: () => Promise<R>,
  fleet: () => Promise<F>,
) {
  if (i % 2 === 1) {
    const r = await reference();
    return { first: 'reference', reference: r, fleet: await fleet() };
  }
  const f = await fleet();
  return { first: 'fleet', reference: await reference(), fleet: f };
}

function expectCount(what: string, got: number, expected: number): void {
  if (got !== expected) throw new Error(`${what}: ${got}, expected ${expected}`);
}

export async function backupBench(o: BackupBenchOptions) {
  if (!process.env.DBFLEET_BACKUP_KEYS)
    throw new Error(
      'DBFLEET_BACKUP_KEYS is not set (export DBFLEET_BACKUP_KEYS=bench-1:$(openssl rand -base64 32))',
    );
  const tools = process.env.DBFLEET_MONGO_TOOLS;
  if (o.pairs && !tools)
    throw new Error('DBFLEET_MONGO_TOOLS is not set (eval "$(scripts/services.sh env)")');
  const deps = newDeps(`bench-${o.tag}-bk`);
  const tenant = `bench${o.tag}src`;
  const source = tenantStores(deps, tenant);
  const { postgresUrl: pgUrl, mongoUrl } = deps.tenants.locate(tenant);
  const storage = path.join(o.dir, 'storage');
  const settleBoth = () => settle(pgUrl, process.env.DBFLEET_FERRET_POSTGRES_URL);
  const targets: string[] = [];

  const fleet = async <N extends 'backup' | 'restore'>(type: N, payload: PayloadInput<N>) => {
    const t = await timedJob(deps, type, payload, {
      env: { DBFLEET_LOCAL_STORAGE_DIR: storage },
      settle: settleBoth,
    });
    return {
      seconds: r3(t.seconds),
      workerPeakRssMiB: t.workerPeakRssMiB,
      workerCpuSeconds: r3(t.workerCpuSeconds),
      phaseEnds: phaseEnds(t.progress),
      workerRssMiBCourse: rssCourse(t.workerRssMiB),
      result: t.result,
    };
  };
  const reference = async (command: string, args: string[]): Promise<Side> => {
    settleBoth();
    return { seconds: r3(await timedCommand(command, args)) };
  };
  /** A tenant to restore into: nothing of it exists yet; the restore registers it. */
  const newTarget = (label: string) => {
    const t = `bench${o.tag}${label}`;
    targets.push(t);
    return t;
  };
  const dropBackup = async (backupId: string, store: 'local' | 's3') => {
    if (store === 'local') await rm(path.join(storage, 'backups', tenant, backupId), { recursive: true });
    else
      for await (const obj of deps.objects.list(`backups/${tenant}/${backupId}/`))
        await deps.objects.delete(obj.key);
  };
  const eventsIn = (db: string) =>
    deps.mongo.db(mongoUrl, db).collection('listening_events').estimatedDocumentCount();
  const withoutResult = <T extends { result: unknown }>({ result: _, ...rest }: T) => rest;

  /** (a): the backup job against pg_dump -Fc of the schema into `dump`. */
  const postgresBackup = async (i: number, dump: string, destination: 'local' | 's3') => {
    const pair = await inOrder(
      i,
      () => reference('pg_dump', ['-Fc', '-n', source.namespace, '-f', dump, pgUrl]),
      () => fleet('backup', { tenant, stores: ['postgres'], destination }),
    );
    const dumpBytes = (await stat(dump)).size;
    const { backupId, bytes } = pair.fleet.result;
    return {
      backupId,
      figures: {
        first: pair.first,
        fleet: { ...withoutResult(pair.fleet), destination, bytes },
        pgDump: { ...pair.reference, bytes: dumpBytes },
        timeRatio: r3(pair.fleet.seconds / pair.reference.seconds),
        bytesRatio: r3(bytes / dumpBytes),
      },
    };
  };

  /** (b): the restore job into a new tenant against pg_restore -j 2 into a new database. */
  const postgresRestore = async (i: number, backupId: string, dump: string) => {
    const target = newTarget(`p${i}`);
    const database = `bench_${o.tag}_p${i}`;
    const dbUrl = databaseUrl(pgUrl, database);
    const pair = await inOrder(
      i,
      async () => {
        psql(pgUrl, `CREATE DATABASE ${database}`);
        const side = await reference('pg_restore', ['-j', '2', '-d', dbUrl, dump]);
        expectCount('rows pg_restore restored', pgRows(dbUrl, source.namespace), o.rows);
        psql(pgUrl, `DROP DATABASE ${database}`);
        return side;
      },
      async () => {
        const side = await fleet('restore', { tenant, backupId, targetTenant: target, source: 'local' });
        expectCount(
          'rows the restore job restored',
          pgRows(pgUrl, tenantStores(deps, target).namespace),
          o.rows,
        );
        await forgetBenchTenant(deps, target);
        return side;
      },
    );
    return {
      first: pair.first,
      fleet: { ...withoutResult(pair.fleet), verifySeconds: pair.fleet.phaseEnds.verify },
      pgRestore: pair.reference,
      timeRatio: r3(pair.fleet.seconds / pair.reference.seconds),
    };
  };

  /** (c): the backup job against mongodump of the database into a gzipped archive. */
  const mongoBackup = async (i: number, archive: string) => {
    const pair = await inOrder(
      i,
      () =>
        reference(path.join(tools!, 'mongodump'), [
          `--uri=${mongoUrl}`,
          `--db=${source.namespace}`,
          `--archive=${archive}`,
          '--gzip',
          '--quiet',
        ]),
      () => fleet('backup', { tenant, stores: ['mongo'], destination: 'local' }),
    );
    const archiveBytes = (await stat(archive)).size;
    const { backupId, bytes } = pair.fleet.result;
    return {
      backupId,
      figures: {
        first: pair.first,
        fleet: {
          ...withoutResult(pair.fleet),
          bytes,
          docsPerSecond: Math.round(o.docs / pair.fleet.seconds),
        },
        mongodump: {
          ...pair.reference,
          bytes: archiveBytes,
          docsPerSecond: Math.round(o.docs / pair.reference.seconds),
        },
        timeRatio: r3(pair.fleet.seconds / pair.reference.seconds),
        bytesRatio: r3(bytes / archiveBytes),
      },
    };
  };

  /** (c): the restore job into a new tenant against mongorestore of the archive into a new database. */
  const mongoRestore = async (i: number, backupId: string, archive: string) => {
    const target = newTarget(`m${i}`);
    const database = `bench_${o.tag}_m${i}`;
    const pair = await inOrder(
      i,
      async () => {
        const side = await reference(path.join(tools!, 'mongorestore'), [
          `--uri=${mongoUrl}`,
          `--archive=${archive}`,
          '--gzip',
          `--nsFrom=${source.namespace}.*`,
          `--nsTo=${database}.*`,
          '--quiet',
        ]);
        expectCount('documents mongorestore restored', await eventsIn(database), o.docs);
        await deps.mongo.db(mongoUrl, database).dropDatabase();
        return side;
      },
      async () => {
        const side = await fleet('restore', { tenant, backupId, targetTenant: target, source: 'local' });
        expectCount(
          'documents the restore job restored',
          await eventsIn(tenantStores(deps, target).namespace),
          o.docs,
        );
        await forgetBenchTenant(deps, target);
        return side;
      },
    );
    vacuumMongo();
    return {
      first: pair.first,
      fleet: {
        ...withoutResult(pair.fleet),
        verifySeconds: pair.fleet.phaseEnds.verify,
        docsPerSecond: Math.round(o.docs / pair.fleet.seconds),
      },
      mongorestore: { ...pair.reference, docsPerSecond: Math.round(o.docs / pair.reference.seconds) },
      timeRatio: r3(pair.fleet.seconds / pair.reference.seconds),
    };
  };

  /** (d): a backup of both stores and its restore into a new tenant, each in a fresh worker. */
  const memory = async () => {
    const backup = await fleet('backup', { tenant, destination: 'local' });
    const target = newTarget('full');
    const restore = await fleet('restore', {
      tenant,
      backupId: backup.result.backupId,
      targetTenant: target,
      source: 'local',
    });
    const stores = tenantStores(deps, target);
    expectCount('rows restored', pgRows(pgUrl, stores.namespace), o.rows);
    expectCount('documents restored', await eventsIn(stores.namespace), o.docs);
    await forgetBenchTenant(deps, target);
    await dropBackup(backup.result.backupId, 'local');
    vacuumMongo();
    return {
      backup: { ...withoutResult(backup), bytes: backup.result.bytes },
      restore: { ...withoutResult(restore), verifySeconds: restore.phaseEnds.verify },
    };
  };

  await mkdir(storage, { recursive: true });
  try {
    await deps.control.migrate();
    await addTenant(deps, tenant);
    let started = performance.now();
    await fillPostgres(deps, tenant, o.rows);
    const fillPostgresSeconds = r3((performance.now() - started) / 1000);
    started = performance.now();
    await fillMongo(deps, tenant, o.docs, o.dir);
    const fillMongoSeconds = r3((performance.now() - started) / 1000);
    const sizes = {
      rows: o.rows,
      docs: o.docs,
      postgresSchemaMiB: Math.round(
        Number(
          psql(
            pgUrl,
            `SELECT sum(pg_total_relation_size(oid)) FROM pg_class WHERE relnamespace = '${source.namespace}'::regnamespace AND relkind = 'r'`,
          ),
        ) /
          2 ** 20,
      ),
      fillPostgresSeconds,
      fillMongoSeconds,
    };
    console.log('(g) tenant filled', sizes);

    const runs = { postgresBackup: [], postgresRestore: [], mongoBackup: [], mongoRestore: [] } as Record<
      'postgresBackup' | 'postgresRestore' | 'mongoBackup' | 'mongoRestore',
      { timeRatio: number; bytesRatio?: number }[]
    >;
    const report = (part: keyof typeof runs, i: number, figures: { timeRatio: number }) => {
      console.log(`(g) ${part} run ${i}/${o.repeat}`, figures);
      runs[part].push(figures);
    };
    let s3;
    if (o.pairs) {
      for (let i = 1; i <= o.repeat; i++) {
        const dump = path.join(o.dir, `pg-${i}.dump`);
        const a = await postgresBackup(i, dump, 'local');
        report('postgresBackup', i, a.figures);
        report('postgresRestore', i, await postgresRestore(i, a.backupId, dump));
        await dropBackup(a.backupId, 'local');
        await rm(dump);
        const archive = path.join(o.dir, `mongo-${i}.archive`);
        const c = await mongoBackup(i, archive);
        report('mongoBackup', i, c.figures);
        report('mongoRestore', i, await mongoRestore(i, c.backupId, archive));
        await dropBackup(c.backupId, 'local');
        await rm(archive);
      }
      // Once to S3 (s3rver, on the same machine and disk), beside one more pg_dump.
      const dump = path.join(o.dir, 'pg-s3.dump');
      const a = await postgresBackup(1, dump, 's3');
      console.log('(g) postgresBackup to S3', a.figures);
      await dropBackup(a.backupId, 's3');
      await rm(dump);
      s3 = a.figures;
    }
    const mem = await memory();
    console.log('(g) memory: backup and restore of both stores', mem);
    const summary = Object.fromEntries(
      Object.entries(runs)
        .filter(([, rs]) => rs.length > 0)
        .map(([part, rs]) => [
          part,
          {
            timeRatio: spread(rs.map((r) => r.timeRatio)),
            ...(rs[0]!.bytesRatio !== undefined ? { bytesRatio: spread(rs.map((r) => r.bytesRatio!)) } : {}),
            runs: rs,
          },
        ]),
    );
    for (const [part, { timeRatio, bytesRatio }] of Object.entries(summary))
      console.log(
        `(g) ${part}: time ratio ${timeRatio.median} (${timeRatio.min}-${timeRatio.max})` +
          (bytesRatio ? `, bytes ratio ${bytesRatio.median} (${bytesRatio.min}-${bytesRatio.max})` : ''),
      );
    return { sizes, ...summary, postgresBackupToS3: s3, memory: mem };
  } finally {
    for (const t of targets) await forgetBenchTenant(deps, t).catch(() => undefined);
    await forgetBenchTenant(deps, tenant);
    await forgetPrefix(deps);
    await closeDeps(deps);
  }
}
