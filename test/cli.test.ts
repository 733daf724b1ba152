/** The operator's CLI, run as a user runs it (bin/dbfleet), against the real services. */
import { expect, vi } from 'vitest';
import { dropTenantData, tenantStores } from '../src/control/provision.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { cliFor } from './support/cli.ts';
import { freePort, test as base, uniqueId } from './support/fixtures.ts';

/** `cliTenant`: an id for a tenant the test adds through the CLI, dropped after it whatever happened. */
const test = base.extend<{ cliTenant: string }>({
  cliTenant: async ({ deps }, use) => {
    const id = uniqueId('cli');
    await use(id);
    await dropTenantData(tenantStores(deps, id));
    await deps.control.forgetTenant(id);
  },
});

test('tenants, enqueue, jobs and queues commands', async ({ env, startWorker, client, cliTenant }) => {
  const cli = cliFor(env);
  const tenant = cliTenant;
  expect((await cli('tenants', 'add', tenant)).stdout).toContain(
    `${tenant}: added (schema and database t_${tenant}; postgres at 3, mongo at 2)`,
  );
  expect(JSON.parse((await cli('tenants', 'list')).stdout).map((t: { id: string }) => t.id)).toContain(
    tenant,
  );

  startWorker();
  const payload = JSON.stringify({
    tenant,
    target: { store: 'mongo', name: 'sessions' },
    schema: 'sessions',
    source: {
      type: 'inline',
      rows: [{ _id: 'a', userId: 1, device: 'tv', createdAt: '2026-01-01', expiresAt: '2026-01-02' }],
    },
  });
  const { stdout } = await cli(
    'enqueue',
    'load-fixtures',
    payload,
    '--key',
    'cli-1',
    '--wait',
    '--requested-by',
    'ops',
  );
  // One JSON document: the job and its result.
  const enqueued = JSON.parse(stdout) as { type: string; id: string; result: { loaded: number } };
  expect(enqueued).toMatchObject({ type: 'load-fixtures', result: { read: 1, loaded: 1, rejected: 0 } });
  const { id } = enqueued;

  // The audit row lands shortly after the job finishes (copied from its Redis outbox). Each try
  // starts a process (about half a second, more on a busy machine): vi.waitFor's default second
  // allowed two, and the test failed when the machine was busy.
  await vi.waitFor(
    async () =>
      expect(JSON.parse((await cli('jobs', 'show', 'load-fixtures', id)).stdout)).toMatchObject({
        state: 'completed',
        audit: { status: 'completed', requested_by: 'ops', tenant },
      }),
    { timeout: 20_000, interval: 200 },
  );

  const queued = JSON.parse((await cli('enqueue', 'backup', '{"tenant":"acme"}')).stdout) as unknown;
  expect(queued).toEqual({ type: 'backup', id: expect.any(String) });

  await cli('queues', 'pause', 'backup');
  expect(await client.queue('backup').isPaused()).toBe(true);
  await cli('queues', 'resume', 'backup');
  expect(await client.queue('backup').isPaused()).toBe(false);

  const bad = cli('enqueue', 'backup', '{"tenant":"Not A Tenant"}');
  await expect(bad).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/backup payload is invalid: tenant: must be a tenant id/),
  });
});

test('worker --metrics-port serves its Prometheus metrics on loopback', async ({ spawnWorker }) => {
  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const worker = await spawnWorker({ args: ['--metrics-port', String(port)] });
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.headers.get('content-type')).toContain('text/plain');
  const text = await res.text();
  expect(text).toContain('# TYPE dbfleet_jobs_in_flight gauge');
  expect(text).toContain('# TYPE dbfleet_job_failures_total counter');
  worker.proc.kill('SIGTERM');
  expect((await worker.exited).code).toBe(0);
});

// `deps` deletes the keys the listing's queue writes under the test's prefix.
test('jobs list accepts only job states', async ({ env, deps: _ }) => {
  await expect(cliFor(env)('jobs', 'list', 'backup', '--state', 'bogus')).rejects.toMatchObject({
    code: 1,
    stderr:
      "error: option '--state <state>' argument 'bogus' is invalid. Allowed choices are waiting, active, " +
      'delayed, prioritized, completed, failed, waiting-children.\n',
  });
  const { stdout } = await cliFor(env)('jobs', 'list', 'backup', '--state', 'waiting-children');
  expect(stdout).toContain('(index)');
});

test('one-shot commands exit 1 within seconds, with one line, when Redis is unreachable', async ({ env }) => {
  const port = await freePort();
  const cli = cliFor(env, { DBFLEET_REDIS_URL: `redis://:a-redis-secret@127.0.0.1:${port}` });
  const commands = [
    ['queues', 'list'],
    ['enqueue', 'backup', '{"tenant":"acme"}'],
    ['jobs', 'list', 'backup'],
    ['tenants', 'list'],
    ['migrate', 'status', '--all'],
  ];
  for (const args of commands) {
    const started = performance.now();
    const failure = (await cli(...args).then(
      () => ({ code: 0, stderr: '' }),
      (err: { code: number | null; stderr: string }) => err,
    )) as { code: number | null; stderr: string };
    expect(performance.now() - started, args.join(' ')).toBeLessThan(10_000);
    expect(failure.code, args.join(' ')).toBe(1);
    expect(failure.stderr, args.join(' ')).toBe(
      `Redis at redis://:***@127.0.0.1:${port} is unreachable: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
  }
});

/** Whether the tenant's PostgreSQL schema and MongoDB database exist. */
async function tenantData(deps: FleetDeps, id: string): Promise<{ schema: boolean; database: boolean }> {
  const at = deps.tenants.locate(id);
  const { rowCount } = await deps.postgres
    .pool(at.postgresUrl)
    .query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [at.namespace]);
  const { databases } = await deps.mongo.db(at.mongoUrl, 'admin').admin().listDatabases();
  return { schema: rowCount === 1, database: databases.some((d) => d.name === at.namespace) };
}

test('tenants remove unregisters; with --drop-data --confirm it drops the data too', async ({
  env,
  deps,
  client,
  startWorker,
  cliTenant: tenant,
}) => {
  const cli = cliFor(env);
  await cli('tenants', 'add', tenant, '--no-migrate');
  const unknown = uniqueId('nosuch');
  await expect(cli('tenants', 'remove', unknown, tenant)).rejects.toMatchObject({
    code: 1,
    stderr: `no such tenant: ${unknown} (nothing changed; dbfleet tenants list shows the tenants)\n`,
  });
  expect(await deps.control.tenantExists(tenant)).toBe(true);

  // --drop-data without --confirm: says what it would drop, changes nothing, exits 2.
  const unconfirmed = cli('tenants', 'remove', tenant, '--drop-data');
  await expect(unconfirmed).rejects.toMatchObject({
    code: 2,
    stdout: expect.stringContaining(
      `${tenant}: would drop PostgreSQL schema t_${tenant} (postgres://dbfleet:***@`,
    ),
    stderr: 'nothing changed: add --confirm to drop the data and unregister\n',
  });
  expect(await deps.control.tenantExists(tenant)).toBe(true);
  expect(await tenantData(deps, tenant)).toEqual({ schema: true, database: true });

  // Without flags: unregistered, its jobs refused, its data kept.
  expect((await cli('tenants', 'remove', tenant)).stdout).toBe(
    `${tenant}: removed; its jobs are refused from now on (by running workers within 30 s); ` +
      `its PostgreSQL schema and MongoDB database t_${tenant} are kept\n`,
  );
  expect(await deps.control.tenantExists(tenant)).toBe(false);
  expect(await tenantData(deps, tenant)).toEqual({ schema: true, database: true });
  startWorker({ queues: ['load-fixtures'] });
  const job = await client.enqueue('load-fixtures', {
    tenant,
    target: { store: 'mongo', name: 'sessions' },
    source: { type: 'inline', rows: [{ _id: 'a' }] },
  });
  await expect(job.waitForResult({ timeoutMs: 30_000 })).rejects.toThrow(
    `[unknown_tenant] tenant ${tenant} does not exist`,
  );

  // Registered again, then removed with its data.
  await cli('tenants', 'add', tenant, '--no-migrate');
  expect((await cli('tenants', 'remove', tenant, '--drop-data', '--confirm')).stdout).toBe(
    `${tenant}: removed; dropped PostgreSQL schema t_${tenant} and MongoDB database t_${tenant}; ` +
      'its jobs are refused from now on (by running workers within 30 s)\n',
  );
  expect(await deps.control.tenantExists(tenant)).toBe(false);
  expect(await tenantData(deps, tenant)).toEqual({ schema: false, database: false });
});
