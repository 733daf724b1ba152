/**
 * Test fixtures (vitest `test.extend`). Each test gets its own Redis prefix (so its own queues), its
 * own tenant (its own PostgreSQL schema and MongoDB database), and a leak guard that fails the test if
 * it leaves a socket open: a worker, queue, pool or client someone forgot to close.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditDrain } from '../../src/control/audit-drain.ts';
import { randomBytes } from 'node:crypto';
import { test as base } from 'vitest';
import demoConfig from '../../dbfleet.config.ts';
import { createClient, type FleetClient } from '../../src/client/client.ts';
import type { DbfleetConfig } from '../../src/config/define.ts';
import { loadEnv, type Env } from '../../src/config/env.ts';
import { addTenant, dropTenantData, tenantStores } from '../../src/control/provision.ts';
import { dropReplaced } from '../../src/backup/restore-tenant.ts';
import { RestoreRecords } from '../../src/backup/restore-records.ts';
import { createLogger } from '../../src/logger.ts';
import { closeDeps, createDeps, forgetPrefix, type FleetDeps } from '../../src/runtime/deps.ts';
import { startWorker, type FleetWorker, type WorkerOptions } from '../../src/runtime/worker.ts';
import type { TenantPostgres } from '../../src/stores/postgres.ts';
import { handlers } from '../../workers/index.ts';
import type { Db } from 'mongodb';

export const ROOT = path.resolve(import.meta.dirname, '../..');

export interface SpawnedWorker {
  proc: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

export interface TenantHandle {
  id: string;
  pg: TenantPostgres;
  mongo: Db;
}

interface Fixtures {
  leakGuard: void;
  /** The config module the deps and workers see: the demo's, unless a suite overrides it (test.override). */
  config: DbfleetConfig;
  prefix: string;
  tmp: string;
  env: Env;
  deps: FleetDeps;
  tenant: TenantHandle;
  /**
   * More tenants: `register: false` gives an id with nothing behind it (a restore target). Their data,
   * registration and backups go when the test ends.
   */
  spareTenant: (options?: { register?: boolean; migrate?: boolean }) => Promise<TenantHandle>;
  /** The test tenant's folder under DBFLEET_FILE_ROOTS: where its file sources go. */
  files: string;
  client: FleetClient;
  startWorker: (options?: Partial<WorkerOptions>) => FleetWorker;
  spawnWorker: (options?: {
    concurrency?: number;
    env?: Record<string, string>;
    args?: string[];
  }) => Promise<SpawnedWorker>;
}

const openSockets = () =>
  process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap' || r === 'TCPWRAP').length;

export const uniqueId = (label: string) => `${label}${randomBytes(4).toString('hex')}`;

export const test = base.extend<Fixtures>({
  leakGuard: [
    async ({}, use) => {
      const before = openSockets();
      await use();
      // Sockets close asynchronously after their owner's close() resolves; give them a moment.
      for (let i = 0; i < 40 && openSockets() > before; i++) await new Promise((r) => setTimeout(r, 50));
      const leaked = openSockets() - before;
      if (leaked > 0)
        throw new Error(
          `leak guard: the test left ${leaked} socket(s) open (a worker, queue, pool or client)`,
        );
    },
    { auto: true },
  ],

  prefix: async ({}, use) => use(uniqueId('test-')),

  tmp: async ({}, use) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'dbfleet-test-'));
    await use(dir);
    await rm(dir, { recursive: true, force: true });
  },

  env: async ({ prefix, tmp }, use) => {
    await use(
      loadEnv({
        ...process.env,
        DBFLEET_PREFIX: prefix,
        DBFLEET_FILE_ROOTS: path.join(tmp, '{tenant}'),
        DBFLEET_LOCAL_STORAGE_DIR: tmp,
      }),
    );
  },

  config: async ({}, use) => use(demoConfig),

  deps: async ({ env, config, leakGuard: _ }, use) => {
    const deps = createDeps(env, config, createLogger(env.DBFLEET_LOG_LEVEL));
    await deps.control.migrate();
    await use(deps);
    // What the test left in Redis and the control database goes with it: a long-lived development
    // Redis otherwise fills with finished jobs (a million keys slowed every later run).
    await forgetPrefix(deps);
    await closeDeps(deps);
  },

  tenant: async ({ deps }, use) => {
    const id = uniqueId('t');
    const { pg, mongo } = await addTenant(deps, id);
    await use({ id, pg, mongo });
    await forgetTestTenant(deps, id);
  },

  spareTenant: async ({ deps }, use) => {
    const ids: string[] = [];
    await use(async ({ register = true, migrate = true } = {}) => {
      const id = uniqueId('t');
      ids.push(id);
      const { pg, mongo } = register ? await addTenant(deps, id, { migrate }) : tenantStores(deps, id);
      return { id, pg, mongo };
    });
    for (const id of ids) await forgetTestTenant(deps, id);
  },

  files: async ({ tmp, tenant }, use) => {
    const dir = path.join(tmp, tenant.id);
    await mkdir(dir, { recursive: true });
    await use(dir);
  },

  client: async ({ deps }, use) => {
    const client = createClient({ redis: deps.redis, prefix: deps.prefix });
    await use(client);
    await client.close();
  },

  startWorker: async ({ deps }, use) => {
    const started: FleetWorker[] = [];
    await use((options) => {
      const worker = startWorker(deps, { handlers, concurrency: 2, ...options });
      started.push(worker);
      return worker;
    });
    await Promise.all(started.map((w) => w.close(5_000)));
  },

  // After `deps`, so torn down before it: the workers are killed before deps deletes the keys they wrote.
  spawnWorker: async ({ env, deps: _ }, use) => {
    const spawned: SpawnedWorker[] = [];
    await use(async (options = {}) => {
      let output = '';
      const proc = spawn(
        path.join(ROOT, 'bin/dbfleet'),
        ['worker', '--concurrency', String(options.concurrency ?? 1), ...(options.args ?? [])],
        {
          cwd: ROOT,
          env: {
            ...process.env,
            DBFLEET_PREFIX: env.DBFLEET_PREFIX,
            DBFLEET_FILE_ROOTS: env.DBFLEET_FILE_ROOTS!.join(','),
            DBFLEET_LOG_LEVEL: 'info',
            ...options.env,
          },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
        proc.once('exit', (code, signal) => resolve({ code, signal })),
      );
      const ready = new Promise<void>((resolve, reject) => {
        const onData = (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('"worker started"')) resolve();
        };
        proc.stdout!.on('data', onData);
        proc.stderr!.on('data', onData);
        void exited.then(() => reject(new Error(`worker exited before it started:\n${output}`)));
      });
      const worker = { proc, exited, output: () => output };
      spawned.push(worker);
      await ready;
      return worker;
    });
    for (const w of spawned) {
      if (w.proc.exitCode === null && w.proc.signalCode === null) w.proc.kill('SIGKILL');
      await w.exited;
    }
  },
});

/**
 * Drops a test tenant's data, what restores into it set aside, and its backups; forgets it. Only for
 * tests: a deployment keeps all of that until an operator says otherwise.
 */
async function forgetTestTenant(deps: FleetDeps, id: string): Promise<void> {
  const stores = tenantStores(deps, id);
  const target = { pool: deps.postgres.pool(deps.tenants.locate(id).postgresUrl), mongo: stores.mongo };
  for (const r of await new RestoreRecords(deps.control.pool, deps.prefix).list(id))
    await dropReplaced(target, { schema: r.replaced_schema, collections: null });
  await dropTenantData(stores);
  for await (const o of deps.objects.list(`backups/${id}/`)) await deps.objects.delete(o.key);
  await deps.control.forgetTenant(id);
}

/** The deployment's failed attempts as the audit log holds them, once every event has been drained. */
/**
 * Every audit event recorded so far in the control database. A worker's own drainer may hold the
 * drain lock with a batch not yet committed (drainAll then returns at once): the stream is trimmed
 * only after its batch commits, so an empty stream means all of it is in.
 */
export async function drainAudit(deps: FleetDeps): Promise<void> {
  await deps.audit.flushed();
  const drain = new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log);
  const deadline = Date.now() + 10_000;
  while ((await drain.drainOnce()) !== 'empty') {
    if (Date.now() > deadline) throw new Error('the audit stream did not drain within 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export async function failedAttempts(deps: FleetDeps): Promise<{ attempt: number; error_code: string }[]> {
  await drainAudit(deps);
  const { rows } = await deps.control.pool.query<{ attempt: number; error_code: string }>(
    `SELECT attempt, error_code FROM dbfleet.job_events WHERE prefix = $1 AND status = 'failed'`,
    [deps.prefix],
  );
  return rows;
}

/** Polls `probe` until it returns a truthy value or `timeoutMs` passes. */
export async function eventually<T>(
  probe: () => Promise<T>,
  timeoutMs = 30_000,
  everyMs = 100,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A loopback port nothing listens on: taken from the system, then released. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}
