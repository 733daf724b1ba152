/**
 * Benchmarks, each side by side with its reference in the same run, on the services from
 * scripts/services.sh. Each comparison runs `--repeat` times, reference and fleet back to back, and
 * reports every pair and the median ratio: on a shared two-core machine single runs vary by ±10%.
 *   (a) no-op job throughput: the fleet's runtime vs a raw BullMQ worker, same concurrency, same jobs;
 *   (b) load-fixtures rows/s into PostgreSQL vs `psql \copy` of the same rows as CSV;
 *   (c) the worker process's peak RSS (VmHWM) during that million-row load.
 *
 *   eval "$(scripts/services.sh env)" && npm run bench -- [--jobs 20000] [--rows 1000000] [--concurrency 50]
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { randomBytes } from 'node:crypto';
import { Queue, Worker } from 'bullmq';
import { createClient, jobOptions } from '../src/client/client.ts';
import { buildJob } from '../src/jobs/envelope.ts';
import { loadEnv } from '../src/config/env.ts';
import { addTenant, dropTenantData, tenantStores } from '../src/control/provision.ts';
import { createLogger } from '../src/logger.ts';
import { deleteKeysUnder } from '../src/redis.ts';
import { closeDeps, createDeps, type FleetDeps } from '../src/runtime/deps.ts';
import type { Handler } from '../src/runtime/handler.ts';
import { startWorker } from '../src/runtime/worker.ts';
import { handlers } from '../workers/index.ts';
import { generateFile } from '../demo/generate.ts';
import config from '../dbfleet.config.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    rows: { type: 'string', default: '1000000' },
    concurrency: { type: 'string', default: '50' },
    repeat: { type: 'string', default: '5' },
    only: { type: 'string' }, // 'noop' or 'load': one half, while iterating on it
  },
});
const JOBS = Number(args.jobs);
const ROWS = Number(args.rows);
const CONCURRENCY = Number(args.concurrency);
const REPEAT = Number(args.repeat);
const run = randomBytes(3).toString('hex');

function newDeps(prefix: string): FleetDeps {
  const env = loadEnv({ ...process.env, DBFLEET_PREFIX: prefix, DBFLEET_LOG_LEVEL: 'warn' });
  return createDeps(env, config, createLogger('warn'));
}

async function noopThroughput(deps: FleetDeps, tenant: string) {
  // Raw BullMQ: the same Redis, the same concurrency, the same job data and options (attempts,
  // backoff, keeping finished jobs for inspection), a processor that does nothing. Only the runtime
  // differs: validation, audit events, tenant check, metrics, context.
  const payload = {
    tenant,
    target: { store: 'mongo' as const, name: 'sessions' },
    source: { type: 'inline' as const, rows: [] },
  };
  // Both processors return this, so both store and announce the same return value.
  const result = {
    read: 0,
    loaded: 0,
    rejected: 0,
    sampleRejections: [],
    batches: 0,
    resumedFrom: 0,
    rowsPerSecond: 0,
  };
  // Each side's jobs wait in a paused queue until its worker is connected: the clock measures jobs,
  // not start-up.
  const rawQueue = new Queue('raw-noop', { connection: deps.redis, prefix: deps.prefix });
  await rawQueue.pause();
  for (let i = 0; i < JOBS; i += 5000)
    await rawQueue.addBulk(
      Array.from({ length: Math.min(5000, JOBS - i) }, () => ({
        name: `load-fixtures@${tenant}`,
        data: buildJob('load-fixtures', payload).data,
        opts: jobOptions('load-fixtures'),
      })),
    );
  const rawJobs = countdown(JOBS);
  const rawWorker = new Worker('raw-noop', async () => result, {
    connection: deps.redis,
    prefix: deps.prefix,
    concurrency: CONCURRENCY,
  });
  rawWorker.on('completed', rawJobs.tick);
  await rawWorker.waitUntilReady();
  const rawRun = await timeResumed(deps, rawQueue, rawJobs.done, () => rawWorker.close());
  await rawQueue.close();
  // The raw run's finished jobs leave Redis first: the fleet's run should not pay for a fuller Redis.
  await deleteKeysUnder(deps.redis, `${deps.prefix}:raw-noop`);

  // The fleet: validation, tenant check, audit event, timeout sweeper, metrics and context per job.
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  const fleetQueue = client.queue('load-fixtures');
  await fleetQueue.pause();
  for (let i = 0; i < JOBS; i += 5000) {
    await client.enqueueBulk(
      'load-fixtures',
      Array.from({ length: Math.min(5000, JOBS - i) }, () => ({ payload })),
    );
  }
  const fleetJobs = countdown(JOBS);
  const noop: Handler<'load-fixtures'> = async () => {
    fleetJobs.tick();
    return result;
  };
  const worker = startWorker(deps, {
    handlers: { ...handlers, 'load-fixtures': noop },
    queues: ['load-fixtures'], // one queue, as the raw worker has
    concurrency: CONCURRENCY,
  });
  await worker.ready;
  // close() waits for the last jobs to be completed in Redis, and their audit events copied.
  const fleetRun = await timeResumed(deps, fleetQueue, fleetJobs.done, () => worker.close());
  await client.close();
  const raw = JOBS / rawRun.seconds;
  const fleet = JOBS / fleetRun.seconds;
  return {
    jobs: JOBS,
    concurrency: CONCURRENCY,
    rawJobsPerSecond: Math.round(raw),
    fleetJobsPerSecond: Math.round(fleet),
    ratio: +(fleet / raw).toFixed(3),
    // Where the time goes, in CPU µs per job: more stable than throughput on a shared machine.
    cpuMicrosPerJob: { raw: rawRun.cpuPerJob, fleet: fleetRun.cpuPerJob },
  };
}

/** Resolves `done` once `tick` has been called `n` times. */
function countdown(n: number) {
  let left = n;
  let finish!: () => void;
  const done = new Promise<void>((resolve) => (finish = resolve));
  return { done, tick: () => void (--left === 0 && finish()) };
}

/**
 * Times one side of the no-op comparison: from resuming its paused queue until `done` and then
 * `close` (its worker's) have finished, with the CPU each process used per job meanwhile. Each side
 * starts from a CHECKPOINT, as in (b).
 */
async function timeResumed(deps: FleetDeps, queue: Queue, done: Promise<void>, close: () => Promise<void>) {
  await deps.control.pool.query('CHECKPOINT');
  const cpu = await cpuMeter(deps);
  const start = performance.now();
  await queue.resume();
  await done;
  await close();
  const seconds = (performance.now() - start) / 1000;
  return { seconds, cpuPerJob: await cpu.perJob(JOBS) };
}

/**
 * CPU used from now on by this process (the worker side of both runs), Redis (its own INFO counters)
 * and PostgreSQL (its processes' /proc counters, on this machine), for per-job figures.
 */
async function cpuMeter(deps: FleetDeps) {
  const redisCpu = async () => {
    const info = await deps.redis.info('cpu');
    const n = (k: string) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? 0);
    return n('used_cpu_user') + n('used_cpu_sys');
  };
  const process0 = process.cpuUsage();
  const redis0 = await redisCpu();
  const postgres0 = postgresCpuSeconds();
  return {
    async perJob(jobs: number) {
      const p = process.cpuUsage(process0);
      const micros = (seconds: number) => +((seconds * 1e6) / jobs).toFixed(1);
      return {
        worker: micros((p.user + p.system) / 1e6),
        redis: micros((await redisCpu()) - redis0),
        postgres: micros(postgresCpuSeconds() - postgres0),
      };
    },
  };
}

/** User plus system CPU of the PostgreSQL processes running now (backends that exited are missed). */
function postgresCpuSeconds(): number {
  let seconds = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('postgres'))
        seconds += cpuSeconds(Number(pid));
    } catch {
      // the process ended between listing and reading
    }
  }
  return seconds;
}

/** User plus system CPU time a live process has used so far. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024);
}

async function loadVersusCopy(deps: FleetDeps, tenant: string, dir: string) {
  const ndjson = path.join(dir, 'users.ndjson');
  const csv = path.join(dir, 'users.csv');
  const schema = `t_${tenant}`;
  const url = deps.env.DBFLEET_CONTROL_DATABASE_URL;
  const psql = (sql: string) =>
    execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qc', sql], { stdio: 'pipe' });
  // Each side starts from a checkpoint with no dirty pages waiting: a run writes about a gigabyte
  // (PostgreSQL runs with fsync off here), and a checkpoint or the kernel's writeback landing inside
  // one side's timing slowed that side by a quarter.
  const settle = () => {
    psql('CHECKPOINT');
    execFileSync('sync');
  };
  settle();
  // The reference: the same rows as CSV, into an identical table (same indexes), with psql's \copy.
  const copyStart = performance.now();
  psql(`CREATE TABLE ${schema}.users_ref (LIKE ${schema}.users INCLUDING ALL)`);
  psql(
    `\\copy ${schema}.users_ref (id, email, display_name, country, birth_year, created_at) FROM '${csv}' CSV HEADER`,
  );
  const copySeconds = (performance.now() - copyStart) / 1000;
  // Untimed: otherwise autovacuum visits the million fresh rows a minute later, during the fleet's
  // load (some runs were a quarter slower with it).
  psql(`VACUUM (ANALYZE) ${schema}.users_ref`);

  // The fleet: a worker process of its own, so its peak RSS is its own. Timed from when it is ready
  // (its start-up, a second or so of module loading, is not load throughput).
  const worker = spawn(path.join(ROOT, 'bin/dbfleet'), ['worker', '--concurrency', '1'], {
    env: {
      ...process.env,
      DBFLEET_PREFIX: deps.prefix,
      DBFLEET_FILE_ROOTS: dir,
      DBFLEET_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    let output = '';
    worker.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('"worker started"')) resolve();
    });
    worker.once('exit', () => reject(new Error(`worker exited before it started:\n${output}`)));
  });
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  settle();
  const loadStart = performance.now();
  const job = await client.enqueue('load-fixtures', {
    tenant,
    target: { store: 'postgres', name: 'users' },
    schema: 'users',
    source: { type: 'file', path: ndjson },
  });
  const result = await job.waitForResult({ timeoutMs: 1_800_000 });
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const rss = peakRssMiB(worker.pid!);
  const cpu = cpuSeconds(worker.pid!);
  worker.kill('SIGTERM');
  await new Promise((r) => worker.once('exit', r));
  await client.close();
  const copyRate = ROWS / copySeconds;
  const loadRate = ROWS / loadSeconds;
  return {
    rows: ROWS,
    loaded: result.loaded,
    psqlCopyRowsPerSecond: Math.round(copyRate),
    loadFixturesRowsPerSecond: Math.round(loadRate),
    ratio: +(loadRate / copyRate).toFixed(3),
    workerPeakRssMiB: rss,
    // Includes its start-up (module loading, about a second): compare runs, not absolute numbers.
    workerCpuMicrosPerRow: +((cpu * 1e6) / ROWS).toFixed(2),
  };
}

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;

/** Runs one comparison REPEAT times, each with a fresh prefix and tenant, and prints every pair. */
async function repeated<T extends { ratio: number }>(
  label: string,
  compare: (deps: FleetDeps, tenant: string) => Promise<T>,
  warmUp = false,
): Promise<{ medianRatio: number; runs: T[] }> {
  const runs: T[] = [];
  // Run 0 is a warm-up, not reported: in the first run both sides' code is still being compiled, and
  // whichever side runs first (the reference) paid for it.
  for (let i = warmUp ? 0 : 1; i <= REPEAT; i++) {
    const tag = `${label[1]}${i}`;
    const deps = newDeps(`bench-${run}-${tag}`);
    const tenant = `bench${run}${tag}`;
    try {
      await addTenant(deps, tenant);
      const result = await compare(deps, tenant);
      if (i === 0) continue;
      console.log(`${label} run ${i}/${REPEAT}`, result);
      runs.push(result);
    } finally {
      await dropTenantData(tenantStores(deps, tenant));
      // Each run's jobs and audit rows go with it, so runs do not slow down the ones after them.
      await deleteKeysUnder(deps.redis, deps.prefix);
      await deps.control.forgetPrefix(deps.prefix);
      // Now rather than by autovacuum during the next run's timing.
      await deps.control.pool.query('VACUUM dbfleet.job_events');
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
    const noop =
      args.only === 'load' ? undefined : await repeated('(a) no-op throughput', noopThroughput, true);
    let load;
    if (args.only !== 'noop') {
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
    const results = { at: new Date().toISOString(), node: process.version, noop, load };
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
