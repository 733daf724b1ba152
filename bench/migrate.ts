/**
 * migrate benchmarks, each beside its reference in the same run:
 *   (d) `migrate --all` over N tenants (PostgreSQL, the SQL files in bench/migrations) with 4 worker
 *       processes, vs psql applying the same files to the same number of schemas in a shell loop;
 *   (e) the batched backfill's documents/s vs one unbatched `updateMany` over the same documents, with
 *       the server's plan for a batch's `_id` range (an ordered index serves it, or a scan).
 *
 *   eval "$(scripts/services.sh env)" && npm run bench:migrate -- [--tenants 200] [--docs 500000] [--only all,backfill]
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { Collection, Document } from 'mongodb';
import pg from 'pg';
import { createClient } from '../src/client/client.ts';
import { loadEnv } from '../src/config/env.ts';
import { addTenant, dropTenantData, tenantStores } from '../src/control/provision.ts';
import { createLogger } from '../src/logger.ts';
import { BACKFILL_MARK, mongoBackfill } from '../src/migrations/backfill.ts';
import { closeDeps, createDeps } from '../src/runtime/deps.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: args } = parseArgs({
  options: {
    tenants: { type: 'string', default: '200' },
    docs: { type: 'string', default: '500000' },
    only: { type: 'string', default: 'all,backfill' },
  },
});
const TENANTS = Number(args.tenants);
const DOCS = Number(args.docs);
const PARTS = new Set(args.only.split(','));
const run = randomBytes(3).toString('hex');
const folder = path.join(ROOT, 'bench/migrations/postgres');
const files = ['0001_tables.sql', '0002_consent.sql', '0003_indexes.sql'];
const baseUrl = process.env.DBFLEET_CONTROL_DATABASE_URL!;

async function admin(sql: string) {
  const c = new pg.Client({ connectionString: baseUrl });
  await c.connect();
  await c.query(sql);
  await c.end();
}

async function migrateAll() {
  // A deployment of its own: its own control database, so --all sees only the bench's tenants.
  const controlDb = `bench_ctl_${run}`;
  await admin(`CREATE DATABASE ${controlDb}`);
  const controlUrl = new URL(baseUrl);
  controlUrl.pathname = `/${controlDb}`;
  const configFile = path.join(tmpdir(), `dbfleet-bench-config-${run}.ts`);
  await writeFile(configFile, `export default ${JSON.stringify({ migrations: { postgres: folder } })};\n`);
  const vars = {
    ...process.env,
    DBFLEET_PREFIX: `bench-mig-${run}`,
    DBFLEET_CONTROL_DATABASE_URL: controlUrl.href,
    DBFLEET_TENANT_POSTGRES_URL: baseUrl,
    DBFLEET_CONFIG: configFile,
    DBFLEET_LOG_LEVEL: 'warn',
  };
  const env = loadEnv(vars);
  const deps = createDeps(env, { migrations: { postgres: folder } }, createLogger('warn'));
  const workers: ChildProcess[] = [];
  const ids = Array.from({ length: TENANTS }, (_, i) => `bm${run}_${i}`);
  try {
    await deps.control.migrate();
    for (const id of ids) await addTenant(deps, id, { migrate: false });
    for (let i = 0; i < 4; i++) {
      const w = spawn(
        path.join(ROOT, 'bin/dbfleet'),
        ['worker', '--queues', 'migrate', '--concurrency', '2'],
        {
          env: vars,
          stdio: 'ignore',
        },
      );
      workers.push(w);
    }
    await new Promise((r) => setTimeout(r, 3_000)); // let the workers connect
    const client = createClient({ redis: deps.redis, prefix: deps.prefix });
    const started = performance.now();
    const job = await client.enqueue('migrate', { tenant: 'all', store: 'postgres' });
    const result = await job.waitForResult({ timeoutMs: 600_000 });
    const fleetSeconds = (performance.now() - started) / 1000;
    await client.close();
    if (result.summary.ok !== TENANTS) throw new Error(`fleet: ${JSON.stringify(result.summary)}`);

    // Reference: the same SQL files (their up sections) with psql, one schema after another.
    const upSql = await Promise.all(
      files.map(async (f) => {
        const text = await readFile(path.join(folder, f), 'utf8');
        return text.split('-- migrate:down')[0]!;
      }),
    );
    const sqlFile = path.join(tmpdir(), `dbfleet-bench-up-${run}.sql`);
    await writeFile(sqlFile, upSql.join('\n'));
    const schemas = Array.from({ length: TENANTS }, (_, i) => `bp${run}_${i}`);
    const script = `for s in ${schemas.join(' ')}; do
      psql -q -v ON_ERROR_STOP=1 "${baseUrl}" -1 -c "CREATE SCHEMA $s; SET search_path TO $s" -f ${sqlFile} || exit 1
    done`;
    const psqlStarted = performance.now();
    execFileSync('bash', ['-c', script], { stdio: 'inherit' });
    const psqlSeconds = (performance.now() - psqlStarted) / 1000;
    await admin(`DROP SCHEMA ${schemas.join(', ')} CASCADE`);
    return {
      tenants: TENANTS,
      fleetSeconds: +fleetSeconds.toFixed(2),
      psqlLoopSeconds: +psqlSeconds.toFixed(2),
      fleetSpeedup: +(psqlSeconds / fleetSeconds).toFixed(2),
    };
  } finally {
    for (const w of workers) w.kill('SIGTERM');
    for (const id of ids) await dropTenantData(tenantStores(deps, id)).catch(() => undefined);
    await closeDeps(deps);
    await admin(`DROP DATABASE IF EXISTS ${controlDb} WITH (FORCE)`);
    await rm(configFile, { force: true });
  }
}

const BATCH = 20_000;
const docId = (i: number) => `d${String(i).padStart(9, '0')}`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return (performance.now() - started) / 1000;
}

async function backfillVersusUpdateMany() {
  const env = loadEnv({ ...process.env, DBFLEET_PREFIX: `bench-bf-${run}` });
  const log = createLogger('warn');
  const deps = createDeps(env, {}, log);
  const db = deps.mongo.db(env.DBFLEET_TENANT_MONGO_URL, `bench_bf_${run}`);
  try {
    const fill = async (name: string) => {
      const c = db.collection(name);
      for (let i = 0; i < DOCS; i += 20_000)
        await c.insertMany(
          Array.from({ length: Math.min(20_000, DOCS - i) }, (_, k) => ({
            _id: docId(i + k) as never,
            n: i + k,
          })),
          { ordered: false },
        );
    };
    await fill('batched');
    await fill('unbatched');
    const plan = await batchPlan(db.collection('batched'));
    const signal = new AbortController().signal;
    const batchedSeconds = await timed(() =>
      mongoBackfill(db, { prefix: 'bench/', signal, log })({
        name: 'inc',
        collection: 'batched',
        update: { $inc: { v: 1 } },
        batchSize: BATCH,
      }),
    );
    const unbatchedSeconds = await timed(() => db.collection('unbatched').updateMany({}, { $inc: { v: 1 } }));
    // Where the backfill's time goes, each part timed alone: the walk (every _id, in order, sent to
    // the client to cut batches) and the batches' range updates (no walk, no mark, no checkpoint).
    const walkSeconds = await timed(async () => {
      const cursor = db
        .collection('batched')
        .find({}, { projection: { _id: 1, [BACKFILL_MARK]: 1 } })
        .sort({ _id: 1 })
        .batchSize(BATCH);
      for await (const _ of cursor);
    });
    await fill('ranges');
    const rangeUpdatesSeconds = await timed(async () => {
      for (let i = 0; i < DOCS; i += BATCH)
        await db
          .collection('ranges')
          .updateMany({ _id: { $gte: docId(i), $lte: docId(Math.min(i + BATCH, DOCS) - 1) } } as Document, {
            $inc: { v: 1 },
          });
    });
    return {
      documents: DOCS,
      batchPlan: plan,
      backfillDocsPerSecond: Math.round(DOCS / batchedSeconds),
      updateManyDocsPerSecond: Math.round(DOCS / unbatchedSeconds),
      ratio: +(unbatchedSeconds / batchedSeconds).toFixed(2),
      seconds: {
        backfill: +batchedSeconds.toFixed(2),
        updateMany: +unbatchedSeconds.toFixed(2),
        walkAlone: +walkSeconds.toFixed(2),
        rangeUpdatesAlone: +rangeUpdatesSeconds.toFixed(2),
      },
    };
  } finally {
    await db.dropDatabase();
    await closeDeps(deps);
  }
}

/**
 * How the server finds one batch's documents (the filter of the batch's updateMany; servers explain
 * a find, not always an update): the plan's node types and index names, outermost first.
 */
async function batchPlan(collection: Collection): Promise<string> {
  const explained = await collection
    .find({
      _id: { $gte: docId(BATCH), $lte: docId(2 * BATCH - 1) },
      [BACKFILL_MARK]: { $ne: 'x' },
    } as Document)
    .explain();
  const steps: string[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    // PostgreSQL's plan (FerretDB) names "Node Type" and "Index Name"; MongoDB's, stage and indexName.
    const kind = n['Node Type'] ?? n.stage;
    const index = n['Index Name'] ?? n.indexName;
    if (typeof kind === 'string') steps.push(typeof index === 'string' ? `${kind} (${index})` : kind);
    for (const [key, value] of Object.entries(n)) if (key !== 'command') walk(value);
  };
  walk(explained.queryPlanner ?? explained);
  return steps.join(' > ');
}

const d = PARTS.has('all') ? await migrateAll() : undefined;
if (d) console.log('(d) migrate --all', d);
const e = PARTS.has('backfill') ? await backfillVersusUpdateMany() : undefined;
if (e) console.log('(e) backfill vs updateMany', e);
const at = new Date().toISOString();
await mkdir(path.join(ROOT, 'bench/results'), { recursive: true });
await writeFile(
  path.join(ROOT, `bench/results/migrate-${at.slice(0, 19).replace(/:/g, '')}.json`),
  JSON.stringify({ at, d, e }, null, 2),
);
