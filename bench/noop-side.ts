/**
 * One side of bench (a), in a process of its own, as a worker is deployed: either a raw BullMQ
 * worker or the fleet's runtime, each around a processor that does nothing.
 *
 * A side first runs warm-up rounds on the same worker (untimed: V8 is still compiling BullMQ's and
 * the runtime's hot paths, and one side's warm-up must not become the other's), then one timed round
 * of `--jobs` jobs: they wait in a paused queue, the clock runs from resume() until the worker has
 * closed (for the fleet, until the round's audit events are in PostgreSQL). It prints one JSON line.
 *
 *   node bench/noop-side.ts raw|fleet --prefix P --tenant T [--jobs 60000] [--concurrency 50] [--warm-up 3x10000]
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Queue, Worker } from 'bullmq';
import { createClient, jobOptions } from '../src/client/client.ts';
import { loadEnv } from '../src/config/env.ts';
import { auditStreamKey } from '../src/control/audit-outbox.ts';
import { buildJob } from '../src/jobs/envelope.ts';
import { createLogger } from '../src/logger.ts';
import { closeDeps, createDeps, forgetPrefix, type FleetDeps } from '../src/runtime/deps.ts';
import type { Handler } from '../src/runtime/handler.ts';
import { startWorker } from '../src/runtime/worker.ts';
import { handlers } from '../workers/index.ts';
import config from '../dbfleet.config.ts';
import { cpuMeter } from './proc.ts';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string' },
    tenant: { type: 'string' },
    jobs: { type: 'string', default: '60000' },
    concurrency: { type: 'string', default: '50' },
    'warm-up': { type: 'string', default: '3x10000' },
  },
});
const side = positionals[0];
if ((side !== 'raw' && side !== 'fleet') || !args.prefix || !args.tenant)
  throw new Error('usage: noop-side.ts raw|fleet --prefix P --tenant T');
const JOBS = Number(args.jobs);
const CONCURRENCY = Number(args.concurrency);
const [warmRounds, warmJobs] = args['warm-up'].split('x').map(Number) as [number, number];

// A file source, never opened: inline rows would be overwritten in every finished job's data
// (personal data leaves Redis), a cost of inline loads, not of the runtime this measures.
const payload = {
  tenant: args.tenant,
  target: { store: 'mongo' as const, name: 'sessions' },
  source: { type: 'file' as const, path: 'never-read.ndjson' },
  format: 'ndjson' as const,
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

/** What each side provides: a paused queue, a way to fill it, and its worker's close. */
interface Side {
  queue: Queue;
  /** Adds `n` jobs (at most ENQUEUE_CHUNK) in one round trip. */
  add(n: number): Promise<unknown>;
  /** Waits until the round's jobs are finished and their effects written (fleet: audit rows). */
  settle(): Promise<void>;
  close(): Promise<void>;
}

const ENQUEUE_CHUNK = 5000;

async function enqueue(side: Side, n: number): Promise<void> {
  for (let i = 0; i < n; i += ENQUEUE_CHUNK) await side.add(Math.min(ENQUEUE_CHUNK, n - i));
}

// Counts finished jobs: `roundDone(n)` resolves after n more ticks.
let left = 0;
let finish = () => {};
const tick = () => void (--left === 0 && finish());
const roundDone = (n: number) => {
  left = n;
  return new Promise<void>((resolve) => (finish = resolve));
};

async function rawSide(deps: FleetDeps): Promise<Side> {
  // The same Redis, concurrency, job data and options (attempts, backoff, keeping finished jobs for
  // inspection) as the fleet's; only the runtime around the processor differs.
  const queue = new Queue('raw-noop', { connection: deps.redis, prefix: deps.prefix });
  await queue.pause();
  const worker = new Worker('raw-noop', async () => result, {
    connection: deps.redis,
    prefix: deps.prefix,
    concurrency: CONCURRENCY,
  });
  worker.on('completed', tick);
  await worker.waitUntilReady();
  const job = { ...buildJob('load-fixtures', payload), opts: jobOptions('load-fixtures') };
  return {
    queue,
    add: (n) => queue.addBulk(Array.from({ length: n }, () => job)),
    settle: async () => {},
    async close() {
      await worker.close();
      await queue.close();
    },
  };
}

async function fleetSide(deps: FleetDeps): Promise<Side> {
  // Validation, tenant check, audit event, timeout sweeper, metrics and context per job.
  const client = createClient({ redis: deps.redis, prefix: deps.prefix });
  const queue = client.queue('load-fixtures');
  await queue.pause();
  const noop: Handler<'load-fixtures'> = async () => {
    tick();
    return result;
  };
  const worker = startWorker(deps, {
    handlers: { ...handlers, 'load-fixtures': noop },
    queues: ['load-fixtures'], // one queue, as the raw worker has
    concurrency: CONCURRENCY,
  });
  await worker.ready;
  return {
    queue,
    add: (n) =>
      client.enqueueBulk(
        'load-fixtures',
        Array.from({ length: n }, () => ({ payload })),
      ),
    // A warm-up round's audit events are copied before the next round starts.
    async settle() {
      await deps.audit.flushed();
      while ((await deps.redis.xlen(auditStreamKey(deps.prefix))) > 0) await sleep(10);
    },
    async close() {
      // Waits for the last jobs to be completed in Redis and their audit events copied.
      await worker.close();
      await client.close();
    },
  };
}

const env = loadEnv({ ...process.env, DBFLEET_PREFIX: args.prefix, DBFLEET_LOG_LEVEL: 'warn' });
const deps = createDeps(env, config, createLogger('warn'));
// Tenants are registered per deployment (prefix): this side's is its own.
await deps.control.addTenant(args.tenant);
try {
  const s = side === 'raw' ? await rawSide(deps) : await fleetSide(deps);
  for (let round = 0; round < warmRounds; round++) {
    await enqueue(s, warmJobs);
    const done = roundDone(warmJobs);
    await s.queue.resume();
    await done;
    await s.queue.pause();
    await s.settle();
  }
  await enqueue(s, JOBS);
  await deps.control.pool.query('CHECKPOINT');
  const done = roundDone(JOBS);
  const cpu = await cpuMeter(deps.redis);
  const start = performance.now();
  await s.queue.resume();
  await done;
  await s.close();
  const seconds = (performance.now() - start) / 1000;
  const cpuMicrosPerJob = await cpu.perUnit(JOBS);
  console.log(JSON.stringify({ side, jobsPerSecond: Math.round(JOBS / seconds), cpuMicrosPerJob }));
} finally {
  // This side's jobs and audit rows go with it, whether or not it finished.
  await forgetPrefix(deps);
  await deps.control.forgetTenant(args.tenant);
  await closeDeps(deps);
}
