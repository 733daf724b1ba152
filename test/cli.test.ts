/** The operator's CLI, run as a user runs it (bin/dbfleet), against the real services. */
import { execFile } from 'node:child_process';
import { createServer } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect, vi } from 'vitest';
import type { Env } from '../src/config/env.ts';
import { ROOT, test, uniqueId } from './support/fixtures.ts';

const run = promisify(execFile);

/** bin/dbfleet with the test's prefix; rejects with { code, stdout, stderr } on a non-zero exit. */
const cliFor =
  (env: Env, vars: Record<string, string> = {}) =>
  (...args: string[]) =>
    run(path.join(ROOT, 'bin/dbfleet'), args, {
      env: { ...process.env, DBFLEET_PREFIX: env.DBFLEET_PREFIX, DBFLEET_LOG_LEVEL: 'warn', ...vars },
      timeout: 60_000,
    });

/** A loopback port nothing listens on: taken from the system, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

test('tenants, enqueue, jobs and queues commands', async ({ env, startWorker, deps, client }) => {
  const cli = cliFor(env);
  const tenant = uniqueId('cli');
  expect((await cli('tenants', 'add', tenant)).stdout).toContain(
    `${tenant}: added (schema and database t_${tenant}; postgres at 2, mongo at 2)`,
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
  const [enqueued] = stdout.split('\n}\n');
  const id = (JSON.parse(`${enqueued}\n}`) as { id: string }).id;
  expect(stdout).toMatch(/"loaded": 1/);

  // The audit row lands shortly after the job finishes (copied from its Redis outbox).
  await vi.waitFor(async () =>
    expect(JSON.parse((await cli('jobs', 'show', 'load-fixtures', id)).stdout)).toMatchObject({
      state: 'completed',
      audit: { status: 'completed', requested_by: 'ops', tenant },
    }),
  );

  await cli('queues', 'pause', 'backup');
  expect(await client.queue('backup').isPaused()).toBe(true);
  await cli('queues', 'resume', 'backup');
  expect(await client.queue('backup').isPaused()).toBe(false);

  const bad = cli('enqueue', 'backup', '{"tenant":"Not A Tenant"}');
  await expect(bad).rejects.toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/backup payload is invalid: tenant: must be a tenant id/),
  });
  await deps.postgres
    .pool(deps.tenants.locate(tenant).postgresUrl)
    .query(`DROP SCHEMA "t_${tenant}" CASCADE`);
  await deps.mongo.db(deps.tenants.locate(tenant).mongoUrl, `t_${tenant}`).dropDatabase();
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

test('one-shot commands exit 1 within seconds, with one line, when Redis is unreachable', async ({ env }) => {
  const port = await closedPort();
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
