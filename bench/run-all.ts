/**
 * Benchmarks, each side by side with its reference in the same run, on the services from
 * scripts/services.sh. Each comparison runs `--repeat` times, reference and fleet back to back, and
 * reports every pair and the median ratio: on a shared two-core machine single runs vary by ±10%.
 *   (a) no-op job throughput: the fleet's runtime vs a raw BullMQ worker, same concurrency, same jobs,
 *       each side a fresh process warmed up before its timed round (bench/noop-side.ts) of 60,000
 *       jobs, about four seconds (with 20,000, about a second, the pairs varied twice as much);
 *   (b) load-fixtures rows/s into PostgreSQL vs `psql \copy` of the same rows as CSV;
 *   (c) the worker process's peak RSS (VmHWM) during that million-row load;
 *   (f) load-fixtures documents/s into MongoDB (a million listening events) vs the driver's own
 *       unordered insertMany of the same documents, same batches (bench/mongo-load.ts);
 *   (g) backup and restore of one tenant (`--rows` rows, `--docs` documents) against pg_dump,
 *       pg_restore, mongodump and mongorestore, and the worker's peak RSS (bench/backup.ts);
 *       `--only backup-memory` runs only its memory part, for large sizes;
 *   (i) the cleanup job on a table (a collection) of `--rows` (`--docs`) expired and as many live rows
 *       while a writer updates live rows, against one DELETE (deleteMany) of the same rows
 *       (bench/cleanup.ts); `--only cleanup-postgres` or `cleanup-mongo` runs one store.
 *
 *   eval "$(scripts/services.sh env)" && npm run bench -- [--jobs 60000] [--rows 1000000] [--concurrency 50]
 *     [--only noop,load,mongo,backup,erase,cleanup] [--docs 1000000] [--users 1000000 --events 10000000 --subjects 1000]
 *     [--baseline 10 --sides fleet,fleet-alone,fleet-mixed,delete,delete-writer,delete-mixed --target-ms 50 --no-time-index]
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { addTenant } from '../src/control/provision.ts';
import { closeDeps, forgetPrefix, type FleetDeps } from '../src/runtime/deps.ts';
import { generateFile } from '../demo/generate.ts';
import { backupBench } from './backup.ts';
import { CLEANUP_SIDES, cleanupBench, type CleanupSide } from './cleanup.ts';
import { eraseBench } from './erase.ts';
import { forgetBenchTenant, median, newDeps, psql, settle } from './common.ts';
import { mongoLoadVersusInsertMany } from './mongo-load.ts';
import { timedJob } from './worker.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '60000' },
    rows: { type: 'string', default: '1000000' },
    concurrency: { type: 'string', default: '50' },
    repeat: { type: 'string' }, // 5, or 1 for (i) (each of its rounds builds its tables again)
    only: { type: 'string', default: 'noop,load,mongo' }, // some of them, while iterating on one
    docs: { type: 'string' }, // (g)'s MongoDB documents; --rows by default
    users: { type: 'string', default: '1000000' }, // (h)'s tenant
    events: { type: 'string', default: '10000000' },
    subjects: { type: 'string', default: '1000' },
    baseline: { type: 'string', default: '10' }, // (i): seconds of the writer alone before each side
    'target-ms': { type: 'string' }, // (i): the policies' batch.targetMs (default 50)
    'no-time-index': { type: 'boolean' }, // (i): no index on the MongoDB collection's time field
    sides: { type: 'string', default: CLEANUP_SIDES.join(',') }, // (i)
  },
});
const JOBS = Number(args.jobs);
const ROWS = Number(args.rows);
const DOCS = Number(args.docs ?? args.rows);
const CONCURRENCY = Number(args.concurrency);
const REPEAT = Number(args.repeat ?? 5);
const SIDES = args.sides.split(',') as CleanupSide[];
for (const s of SIDES) if (!CLEANUP_SIDES.includes(s)) throw new Error(`--sides: no side ${s}`);
const run = randomBytes(3).toString('hex');
const PARTS = new Set(args.only.split(','));

interface SideFigures {
  jobsPerSecond: number;
  cpuMicrosPerJob: { worker: number; redis: number; postgres: number };
}

/** Runs one side of (a) in a process of its own (bench/noop-side.ts) and returns its figures. */
async function noopSide(side: 'raw' | 'fleet', deps: FleetDeps, tenant: string): Promise<SideFigures> {
  const child = spawn(
    process.execPath,
    [
      path.join(ROOT, 'bench/noop-side.ts'),
      side,
      ...['--prefix', `${deps.prefix}-${side}`, '--tenant', tenant],
      ...['--jobs', String(JOBS), '--concurrency', String(CONCURRENCY)],
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  if (code !== 0) throw new Error(`noop-side.ts ${side} exited with ${String(code)}:\n${output}`);
  return JSON.parse(output.trim().split('\n').at(-1)!) as SideFigures;
}

/**
 * (a): a raw BullMQ worker and the fleet's runtime, each in a fresh process of its own, warmed up,
 * then timed over the same number of no-op jobs. Which side goes first alternates between runs.
 */
async function noopThroughput(deps: FleetDeps, tenant: string, i: number) {
  const order = i % 2 === 1 ? (['raw', 'fleet'] as const) : (['fleet', 'raw'] as const);
  const figures: Partial<Record<'raw' | 'fleet', SideFigures>> = {};
  for (const side of order) figures[side] = await noopSide(side, deps, tenant);
  const { raw, fleet } = figures as Record<'raw' | 'fleet', SideFigures>;
  return {
    jobs: JOBS,
    concurrency: CONCURRENCY,
    first: order[0],
    rawJobsPerSecond: raw.jobsPerSecond,
    fleetJobsPerSecond: fleet.jobsPerSecond,
    ratio: +(fleet.jobsPerSecond / raw.jobsPerSecond).toFixed(3),
    // Where the time goes, in CPU µs per job: more stable than throughput on a shared machine.
    cpuMicrosPerJob: { raw: raw.cpuMicrosPerJob, fleet: fleet.cpuMicrosPerJob },
  };
}

/**
 * The worker reads only from the tenant's folder: a link to the generated files. Returns the
 * worker's DBFLEET_FILE_ROOTS and the tenant's folder.
 */
async function tenantFolder(dir: string, tenant: string): Promise<{ fileRoots: string; files: string }> {
  const roots = path.join(dir, 'tenants');
  await mkdir(roots, { recursive: true });
  await symlink(dir, path.join(roots, tenant));
  return { fileRoots: path.join(roots, '{tenant}'), files: path.join(roots, tenant) };
}

async function loadVersusCopy(deps: FleetDeps, tenant: string, dir: string) {
  const { fileRoots, files } = await tenantFolder(dir, tenant);
  const ndjson = path.join(files, 'users.ndjson');
  const csv = path.join(dir, 'users.csv');
  const schema = `t_${tenant}`;
  const url = deps.env.DBFLEET_CONTROL_DATABASE_URL;
  // Each side starts from a checkpoint with no dirty pages waiting (a run writes about a gigabyte).
  settle(url);
  // The reference: the same rows as CSV, into an identical table (same indexes), with psql's \copy.
  const copyStart = performance.now();
  psql(url, `CREATE TABLE ${schema}.users_ref (LIKE ${schema}.users INCLUDING ALL)`);
  psql(
    url,
    `\\copy ${schema}.users_ref (id, email, display_name, country, birth_year, created_at) FROM '${csv}' CSV HEADER`,
  );
  const copySeconds = (performance.now() - copyStart) / 1000;
  // Untimed: otherwise autovacuum visits the million fresh rows a minute later, during the fleet's
  // load (some runs were a quarter slower with it).
  psql(url, `VACUUM (ANALYZE) ${schema}.users_ref`);

  // The fleet: a worker process of its own, timed from when it is ready.
  const load = await timedJob(
    deps,
    'load-fixtures',
    {
      tenant,
      target: { store: 'postgres', name: 'users' },
      schema: 'users',
      source: { type: 'file', path: ndjson },
    },
    { env: { DBFLEET_FILE_ROOTS: fileRoots }, settle: () => settle(url) },
  );
  const { result, seconds: loadSeconds } = load;
  const copyRate = ROWS / copySeconds;
  const loadRate = ROWS / loadSeconds;
  return {
    rows: ROWS,
    loaded: result.loaded,
    psqlCopyRowsPerSecond: Math.round(copyRate),
    loadFixturesRowsPerSecond: Math.round(loadRate),
    ratio: +(loadRate / copyRate).toFixed(3),
    workerPeakRssMiB: load.workerPeakRssMiB,
    // Includes its start-up (module loading, about a second): compare runs, not absolute numbers.
    workerCpuMicrosPerRow: +((load.workerCpuSeconds * 1e6) / ROWS).toFixed(2),
  };
}

/** Runs one comparison REPEAT times, each with a fresh prefix and tenant, and prints every pair. */
async function repeated<T extends { ratio: number }>(
  label: string,
  compare: (deps: FleetDeps, tenant: string, i: number) => Promise<T>,
): Promise<{ medianRatio: number; runs: T[] }> {
  const runs: T[] = [];
  for (let i = 1; i <= REPEAT; i++) {
    const tag = `${label[1]}${i}`;
    const deps = newDeps(`bench-${run}-${tag}`);
    const tenant = `bench${run}${tag}`;
    try {
      await addTenant(deps, tenant);
      const result = await compare(deps, tenant, i);
      console.log(`${label} run ${i}/${REPEAT}`, result);
      runs.push(result);
    } finally {
      await forgetBenchTenant(deps, tenant);
      // Each run's jobs and audit rows go with it, so runs do not slow down the ones after them.
      await forgetPrefix(deps);
      // Now rather than by autovacuum during the next run's timing.
      await deps.control.pool.query('VACUUM dbfleet.job_event_log');
      await closeDeps(deps);
    }
  }
  const medianRatio = median(runs.map((r) => r.ratio));
  console.log(`${label} median ratio over ${REPEAT} runs: ${medianRatio}`);
  return { medianRatio, runs };
}

async function main() {
  const deps = newDeps(`bench-${run}`);
  const dir = await mkdtemp(path.join(tmpdir(), 'dbfleet-bench-'));
  try {
    await deps.control.migrate();
    const noop = PARTS.has('noop') ? await repeated('(a) no-op throughput', noopThroughput) : undefined;
    let load;
    if (PARTS.has('load')) {
      await generateFile(path.join(dir, 'users.ndjson'), { dataset: 'users', seed: 11, scale: ROWS });
      await generateFile(path.join(dir, 'users.csv'), {
        dataset: 'users',
        seed: 11,
        scale: ROWS,
        format: 'csv',
      });
      const runs = await repeated('(b) load-fixtures vs psql \\copy', (d, tenant) =>
        loadVersusCopy(d, tenant, dir),
      );
      const peak = Math.max(...runs.runs.map((r) => r.workerPeakRssMiB));
      console.log(`(c) worker peak RSS over the runs: ${peak} MiB`);
      load = { ...runs, workerPeakRssMiB: peak };
    }
    let mongo;
    if (PARTS.has('mongo')) {
      const file = path.join(dir, 'listening_events.ndjson');
      await generateFile(file, { dataset: 'listening_events', seed: 11, scale: ROWS });
      mongo = await repeated('(f) load-fixtures into MongoDB vs insertMany', async (d, tenant) => {
        const { fileRoots, files } = await tenantFolder(dir, tenant);
        return mongoLoadVersusInsertMany(
          d,
          tenant,
          path.join(files, 'listening_events.ndjson'),
          fileRoots,
          ROWS,
        );
      });
    }
    const backup =
      PARTS.has('backup') || PARTS.has('backup-memory')
        ? await backupBench({
            rows: ROWS,
            docs: DOCS,
            repeat: REPEAT,
            pairs: PARTS.has('backup'),
            dir,
            tag: run,
          })
        : undefined;
    const erase = PARTS.has('erase')
      ? await eraseBench({
          users: Number(args.users),
          events: Number(args.events),
          subjects: Number(args.subjects),
          repeat: REPEAT,
          concurrencies: [1, 2, 4],
          tag: run,
        })
      : undefined;
    const cleanupStores = (['postgres', 'mongo'] as const).filter(
      (s) => PARTS.has('cleanup') || PARTS.has(`cleanup-${s}`),
    );
    const cleanup = cleanupStores.length
      ? await cleanupBench({
          rows: ROWS,
          docs: DOCS,
          repeat: Number(args.repeat ?? 1),
          stores: cleanupStores,
          sides: SIDES,
          baselineSeconds: Number(args.baseline),
          targetMs: args['target-ms'] === undefined ? undefined : Number(args['target-ms']),
          timeIndex: !args['no-time-index'],
          tag: run,
        })
      : undefined;
    const results = {
      at: new Date().toISOString(),
      node: process.version,
      noop,
      load,
      mongo,
      backup,
      erase,
      cleanup,
    };
    await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
    await writeFile(
      path.join(ROOT, `bench/results/${results.at.slice(0, 19).replace(/:/g, '')}.json`),
      JSON.stringify(results, null, 2),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
    await closeDeps(deps);
  }
}

await main();
