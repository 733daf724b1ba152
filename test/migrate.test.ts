/** migrate on the real stores: fan-out over many tenants, concurrency, drift, down/up, dry run, baseline. */
import type { Payload } from '../queues/index.ts';
import { tenantStores } from '../src/control/provision.ts';
import { migrateTenant } from '../src/migrations/migrator.ts';
import { expect, test, uniqueId, type Deployment } from './support/migrations.ts';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { ROOT } from './support/fixtures.ts';

const execFileAsync = promisify(execFile);

const demo = async (): Promise<{ postgres: Record<string, string>; mongo: Record<string, string> }> => ({
  postgres: {
    '0001_demo_tables.sql': await readFile(
      path.join(ROOT, 'migrations/postgres/0001_demo_tables.sql'),
      'utf8',
    ),
    '0002_users_email_domain.ts': (
      await readFile(path.join(ROOT, 'migrations/postgres/0002_users_email_domain.ts'), 'utf8')
    ).replace('../../src/', `${ROOT}/src/`),
  },
  mongo: {
    '0001_demo_collections.ts': (
      await readFile(path.join(ROOT, 'migrations/mongo/0001_demo_collections.ts'), 'utf8')
    ).replace('../../src/', `${ROOT}/src/`),
    '0002_listening_events_day.ts': (
      await readFile(path.join(ROOT, 'migrations/mongo/0002_listening_events_day.ts'), 'utf8')
    ).replace('../../src/', `${ROOT}/src/`),
  },
});

const run = async (d: Deployment, payload: Partial<Payload<'migrate'>> & { tenant: string }) => {
  const job = await d.client.enqueue('migrate', payload);
  return job.waitForResult({ timeoutMs: 120_000 });
};

const pgHistory = (d: Deployment, tenant: string) =>
  tenantStores(d.deps, tenant).pg.withClient(async (c) => {
    const { rows } = await c.query<{ version: string; n: string }>(
      'SELECT version::text, count(*) AS n FROM _dbfleet_migrations GROUP BY version ORDER BY version',
    );
    return rows.map((r) => `${r.version}x${r.n}`);
  });

test('50 tenants: --all reaches the latest version, a re-run applies nothing, a failing tenant does not stop the others and finishes after the fix', async ({
  deployment,
}) => {
  const files = await demo();
  // A migration that fails on one tenant's data: emails must be unique regardless of case.
  files.postgres['0003_users_email_ci.sql'] = 'CREATE UNIQUE INDEX users_email_ci ON users (lower(email));';
  const d = await deployment(files);
  const ids = Array.from({ length: 50 }, (_, i) => `${uniqueId('m')}_${i}`);
  await d.addTenants(ids);
  const bad = ids[17]!;
  const badPg = tenantStores(d.deps, bad).pg;
  d.startWorker({ concurrency: 4 });
  d.startWorker({ concurrency: 4 });

  // The bad tenant gets its tables first (as production data would exist), then conflicting rows.
  await migrateTenant(d.deps, bad, {
    action: 'apply',
    direction: 'up',
    to: '2',
    dryRun: false,
    store: 'postgres',
    jobId: null,
    requestedBy: 'test',
  });
  await badPg.withClient((c) =>
    c.query(`INSERT INTO users (id, email, display_name, created_at) VALUES
      (1, 'Ann@example.com', 'Ann', now()), (2, 'ann@example.com', 'Ann 2', now())`),
  );

  const first = await run(d, { tenant: 'all' });
  expect(first.summary).toEqual({ tenants: 50, ok: 49, failed: 1 });
  const failed = first.tenants.find((t) => t.status === 'failed')!;
  expect(failed.tenant).toBe(bad);
  expect(failed.error).toMatch(/0003_users_email_ci\.sql.*unique|unique.*0003_users_email_ci\.sql/i);
  for (const id of ids.filter((i) => i !== bad)) {
    expect(await pgHistory(d, id)).toEqual(['1x1', '2x1', '3x1']);
    const pgRow = first.tenants.find((t) => t.tenant === id && t.store === 'postgres')!;
    expect(pgRow).toMatchObject({ status: 'ok', current: '3', pending: [] });
    expect(first.tenants.find((t) => t.tenant === id && t.store === 'mongo')).toMatchObject({ current: '2' });
  }
  // The failed tenant's MongoDB still migrated: its stores are independent.
  expect(await pgHistory(d, bad)).toEqual(['1x1', '2x1']);

  const second = await run(d, { tenant: 'all' });
  expect(second.summary).toEqual({ tenants: 50, ok: 49, failed: 1 });
  for (const row of second.tenants) if (row.status === 'ok') expect(row.applied).toEqual([]);

  await badPg.withClient((c) => c.query(`DELETE FROM users WHERE id = 2`));
  const third = await run(d, { tenant: 'all' });
  expect(third.summary).toEqual({ tenants: 50, ok: 50, failed: 0 });
  const applied = third.tenants.filter((t) => 'applied' in t && t.applied.length > 0);
  expect(applied).toEqual([
    expect.objectContaining({ tenant: bad, store: 'postgres', applied: ['0003_users_email_ci.sql'] }),
  ]);
  expect(await pgHistory(d, bad)).toEqual(['1x1', '2x1', '3x1']);
});

test('two migrate jobs for one tenant at once on two workers: each migration applied exactly once, in both stores', async ({
  deployment,
}) => {
  const d = await deployment({
    postgres: {
      '0001_effects.sql': 'CREATE TABLE effects (what text NOT NULL);',
      // Not idempotent on purpose: a second application would show as a second row.
      '0002_slow_effect.sql': `INSERT INTO effects VALUES ('two'); SELECT pg_sleep(0.5);`,
      '0003_effect.sql': `INSERT INTO effects VALUES ('three');`,
    },
    mongo: {
      '0001_count.ts': `export default { async up({ db }) {
        await new Promise((r) => setTimeout(r, 500));
        await db.collection('effects').updateOne({ _id: 'n' }, { $inc: { n: 1 } }, { upsert: true });
      } };`,
      '0002_count.ts': `export default { async up({ db }) {
        await db.collection('effects').updateOne({ _id: 'n' }, { $inc: { n: 10 } });
      } };`,
    },
  });
  const [t] = await d.addTenants([uniqueId('c')]);
  d.startWorker({ concurrency: 1 });
  d.startWorker({ concurrency: 1 });
  const jobs = await Promise.all([
    d.client.enqueue('migrate', { tenant: t!.pg.schema.slice(2) }),
    d.client.enqueue('migrate', { tenant: t!.pg.schema.slice(2) }),
  ]);
  const results = await Promise.all(jobs.map((j) => j.waitForResult({ timeoutMs: 60_000 })));
  const appliedBy = (store: string) =>
    results.flatMap((r) =>
      r.tenants.filter((x) => x.store === store).flatMap((x) => ('applied' in x ? x.applied : [])),
    );
  expect(appliedBy('postgres').sort()).toEqual([
    '0001_effects.sql',
    '0002_slow_effect.sql',
    '0003_effect.sql',
  ]);
  expect(appliedBy('mongo').sort()).toEqual(['0001_count.ts', '0002_count.ts']);
  expect(await pgHistory(d, t!.pg.schema.slice(2))).toEqual(['1x1', '2x1', '3x1']);
  const effects = await t!.pg.withClient((c) => c.query('SELECT what FROM effects ORDER BY what'));
  expect(effects.rows.map((r) => r.what)).toEqual(['three', 'two']);
  expect(await t!.mongo.collection('effects').findOne({ _id: 'n' as never })).toMatchObject({ n: 11 });
  expect(await t!.mongo.collection('_dbfleet_migrations').countDocuments()).toBe(2);
});

test('an edited applied migration stops the run and names the file; repair accepts it', async ({
  deployment,
}) => {
  const d = await deployment({
    postgres: { '0001_a.sql': 'CREATE TABLE a (id int);' },
    mongo: { '0001_a.ts': `export default { async up({ db }) { await db.createCollection('a'); } };` },
  });
  const [t] = await d.addTenants([uniqueId('d')], { migrate: true });
  const tenant = t!.pg.schema.slice(2);
  d.startWorker();
  await d.write({
    postgres: { '0001_a.sql': 'CREATE TABLE a (id bigint);' },
    mongo: {
      '0001_a.ts': `export default { async up({ db }) { await db.createCollection('a'); } }; // edited`,
    },
  });
  await expect(run(d, { tenant })).rejects.toThrow(/0001_a\.sql \(edited after it was applied\)/);
  const status = await run(d, { tenant, action: 'status' });
  expect(status.tenants.map((r) => ('drifted' in r ? r.drifted : []))).toEqual([
    [{ file: '0001_a.sql', reason: 'edited' }],
    [{ file: '0001_a.ts', reason: 'edited' }],
  ]);
  const repaired = await run(d, { tenant, action: 'repair' });
  expect(repaired.tenants.map((r) => ('repaired' in r ? r.repaired : []))).toEqual([
    ['0001_a.sql'],
    ['0001_a.ts'],
  ]);
  const again = await run(d, { tenant });
  expect(again.summary.failed).toBe(0);
});

test('down --to 1 then up: schema and data as before, in both stores', async ({ deployment }) => {
  const d = await deployment(await demo());
  const [t] = await d.addTenants([uniqueId('u')]);
  const tenant = t!.pg.schema.slice(2);
  d.startWorker();
  await run(d, { tenant, to: '1' });
  await t!.pg.withClient((c) =>
    c.query(`INSERT INTO users (id, email, display_name, created_at)
      SELECT g, 'user' || g || '@Host' || (g % 7) || '.example', 'U' || g, now() FROM generate_series(1, 2000) g`),
  );
  const events = t!.mongo.collection('listening_events');
  await events.insertMany(
    Array.from({ length: 3000 }, (_, i) => ({
      _id: `e${i}` as never,
      userId: i % 50,
      playedAt: new Date(Date.UTC(2026, 0, 1 + (i % 40))),
    })),
  );
  await run(d, { tenant }); // 0002 in each store backfills the existing rows and documents
  const snapshot = async () => ({
    columns: (
      await t!.pg.withClient((c) =>
        c.query(
          `SELECT table_name, column_name, data_type FROM information_schema.columns
          WHERE table_schema = $1 AND table_name NOT LIKE '\\_dbfleet%' ORDER BY 1, 2`,
          [t!.pg.schema],
        ),
      )
    ).rows,
    indexes: (
      await t!.pg.withClient((c) =>
        c.query(
          `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname NOT LIKE '\\_dbfleet%' ORDER BY 1`,
          [t!.pg.schema],
        ),
      )
    ).rows,
    users: (
      await t!.pg.withClient((c) =>
        c.query(`SELECT md5(string_agg(u::text, ',' ORDER BY id)) AS h FROM users u`),
      )
    ).rows[0],
    events: await events
      .find({}, { projection: { _dbfleet_backfill: 0 } })
      .sort({ _id: 1 })
      .toArray(),
  });
  const before = await snapshot();
  expect(before.events[0]).toMatchObject({ day: '2026-01-01' });
  expect(before.columns.map((c) => c.column_name)).toContain('email_domain');
  const domains = await t!.pg.withClient((c) =>
    c.query(`SELECT count(*)::int AS n FROM users WHERE email_domain = lower(split_part(email, '@', 2))`),
  );
  expect(domains.rows[0].n).toBe(2000); // the PostgreSQL backfill filled every row

  const down = await run(d, { tenant, direction: 'down', to: '1' });
  expect(down.tenants.map((r) => ('reverted' in r ? r.reverted : []))).toEqual([
    ['0002_users_email_domain.ts'],
    ['0002_listening_events_day.ts'],
  ]);
  const middle = await snapshot();
  expect(middle.columns.map((c) => c.column_name)).not.toContain('email_domain');
  expect(middle.events.some((e) => 'day' in e)).toBe(false);

  const up = await run(d, { tenant });
  expect(up.summary.failed).toBe(0);
  expect(await snapshot()).toEqual(before);
});

test('dry run plans without changing anything; status; baseline adopts an existing tenant', async ({
  deployment,
}) => {
  const d = await deployment(await demo());
  const [fresh, existing] = await d.addTenants([uniqueId('p'), uniqueId('b')]);
  d.startWorker();
  const plan = await run(d, { tenant: fresh!.pg.schema.slice(2), dryRun: true });
  expect(plan.tenants.map((r) => ('applied' in r ? r.applied : []))).toEqual([
    ['0001_demo_tables.sql', '0002_users_email_domain.ts'],
    ['0001_demo_collections.ts', '0002_listening_events_day.ts'],
  ]);
  const tables = await fresh!.pg.withClient((c) =>
    c.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1`, [
      fresh!.pg.schema,
    ]),
  );
  expect(tables.rows[0].n).toBe(0);

  // A tenant whose first tables were made by hand, before dbfleet: adopt it at version 1.
  const sql = (await readFile(path.join(d.folders.postgres, '0001_demo_tables.sql'), 'utf8')).split(
    '-- migrate:down',
  )[0]!;
  await existing!.pg.withClient((c) => c.query(sql));
  const tenant = existing!.pg.schema.slice(2);
  const baseline = await run(d, { tenant, store: 'postgres', action: 'baseline', to: '1' });
  expect(baseline.tenants[0]).toMatchObject({ applied: ['0001_demo_tables.sql'], current: '1' });
  const up = await run(d, { tenant, store: 'postgres' });
  expect(up.tenants[0]).toMatchObject({ applied: ['0002_users_email_domain.ts'], current: '2', pending: [] });
  const status = await run(d, { tenant, action: 'status' });
  expect(status.tenants).toMatchObject([
    { store: 'postgres', current: '2', pending: [], drifted: [] },
    { store: 'mongo', current: null, pending: ['0001_demo_collections.ts', '0002_listening_events_day.ts'] },
  ]);
  await expect(d.client.enqueue('migrate', { tenant, direction: 'down' })).rejects.toThrow(
    'to: is required going down',
  );
});

test('CLI: migrate up --all through the queue, status --local, and exit code 1 when a tenant fails', async ({
  deployment,
}) => {
  const d = await deployment({
    postgres: { '0001_a.sql': 'CREATE TABLE a (id int);' },
    mongo: {
      '0001_a.ts': `export default { async up({ db, tenant }) {
        if (tenant.startsWith('bad')) throw new Error('refusing ' + tenant);
        await db.createCollection('a');
      } };`,
    },
  });
  const good = uniqueId('good');
  const bad = uniqueId('bad');
  await d.addTenants([good, bad]);
  d.startWorker();
  const cli = (...args: string[]) =>
    execFileAsync(path.join(ROOT, 'bin/dbfleet'), args, {
      env: {
        ...process.env,
        DBFLEET_PREFIX: d.env.DBFLEET_PREFIX,
        DBFLEET_CONTROL_DATABASE_URL: d.env.DBFLEET_CONTROL_DATABASE_URL,
        DBFLEET_TENANT_POSTGRES_URL: d.env.DBFLEET_TENANT_POSTGRES_URL,
        DBFLEET_CONFIG: d.configFile,
        DBFLEET_LOG_LEVEL: 'warn',
      },
    }).then(
      (r) => ({ code: 0, stdout: r.stdout }),
      (e: { code: number; stdout: string }) => ({ code: e.code, stdout: e.stdout }),
    );
  const up = await cli('migrate', 'up', '--all');
  expect(up.code).toBe(1);
  expect(up.stdout).toContain('2 tenant(s): 1 ok, 1 failed');
  expect(up.stdout).toMatch(new RegExp(`${bad}.*0001_a\\.ts: refusing ${bad}`));
  const status = await cli('migrate', 'status', '--tenant', good, '--local');
  expect(status.code).toBe(0);
  expect(status.stdout).toMatch(new RegExp(`${good}.*postgres.*ok.*'1'`));
  expect(status.stdout).toContain('1 tenant(s): 1 ok, 0 failed');
});

test('a migration marked no-transaction runs CREATE INDEX CONCURRENTLY, statement by statement', async ({
  deployment,
}) => {
  const d = await deployment({
    postgres: {
      '0001_t.sql': 'CREATE TABLE t (a int, b text);',
      '0002_indexes.sql': `-- migrate:no-transaction
-- migrate:up
CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a);
CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (b);
-- migrate:down
DROP INDEX CONCURRENTLY IF EXISTS t_b;
DROP INDEX CONCURRENTLY IF EXISTS t_a;
`,
    },
  });
  const [t] = await d.addTenants([uniqueId('n')]);
  const out = await migrateTenant(d.deps, t!.pg.schema.slice(2), {
    action: 'apply',
    direction: 'up',
    dryRun: false,
    store: 'postgres',
    jobId: null,
    requestedBy: 'test',
  });
  expect(out.stores[0]).toMatchObject({ applied: ['0001_t.sql', '0002_indexes.sql'], current: '2' });
  const indexes = await t!.pg.withClient((c) =>
    c.query(`SELECT indexname FROM pg_indexes WHERE schemaname = $1 ORDER BY 1`, [t!.pg.schema]),
  );
  expect(indexes.rows.map((r) => r.indexname).filter((n) => !n.startsWith('_dbfleet'))).toEqual([
    't_a',
    't_b',
  ]);
});
