/**
 * Fixtures for migration tests: a deployment of its own (its own control database, so `--all` sees
 * only this test's tenants; its own Redis prefix) with migration folders the test writes.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { createClient, type FleetClient } from '../../src/client/client.ts';
import { loadEnv, type Env } from '../../src/config/env.ts';
import type { DbfleetConfig } from '../../src/config/define.ts';
import { addTenant, dropTenantData, type AddedTenant } from '../../src/control/provision.ts';
import { createLogger } from '../../src/logger.ts';
import { deleteKeysUnder } from '../../src/redis.ts';
import { closeDeps, createDeps, type FleetDeps } from '../../src/runtime/deps.ts';
import { startWorker, type FleetWorker, type WorkerOptions } from '../../src/runtime/worker.ts';
import { handlers } from '../../workers/index.ts';
import { test as base, uniqueId } from './fixtures.ts';

export interface MigrationFiles {
  postgres?: Record<string, string>;
  mongo?: Record<string, string>;
}

export interface Deployment {
  env: Env;
  deps: FleetDeps;
  folders: { postgres: string; mongo: string };
  /** Writes (or overwrites) migration files. */
  write(files: MigrationFiles): Promise<void>;
  /** Adds tenants (not migrated unless asked); their stores are dropped after the test. */
  addTenants(ids: string[], options?: { migrate?: boolean }): Promise<AddedTenant[]>;
  client: FleetClient;
  startWorker(options?: Partial<WorkerOptions>): FleetWorker;
  /** A config module file for spawned workers (DBFLEET_CONFIG). */
  configFile: string;
}

const admin = () => new pg.Client({ connectionString: process.env.DBFLEET_CONTROL_DATABASE_URL });

export const test = base.extend<{
  deployment: (files: MigrationFiles, extraEnv?: Record<string, string>) => Promise<Deployment>;
}>({
  deployment: async ({ tmp, prefix, leakGuard: _ }, use) => {
    const made: {
      deps: FleetDeps;
      db: string;
      tenants: AddedTenant[];
      workers: FleetWorker[];
      client: FleetClient;
    }[] = [];
    await use(async (files, extraEnv = {}) => {
      const db = uniqueId('ctl_');
      const c = admin();
      await c.connect();
      await c.query(`CREATE DATABASE ${db}`);
      await c.end();
      const controlUrl = new URL(process.env.DBFLEET_CONTROL_DATABASE_URL!);
      controlUrl.pathname = `/${db}`;
      const folders = {
        postgres: path.join(tmp, 'pg-migrations'),
        mongo: path.join(tmp, 'mongo-migrations'),
      };
      await mkdir(folders.postgres, { recursive: true });
      await mkdir(folders.mongo, { recursive: true });
      const vars = {
        ...process.env,
        DBFLEET_PREFIX: prefix,
        DBFLEET_CONTROL_DATABASE_URL: controlUrl.href,
        // Tenants' schemas stay in the shared database; only the fleet's own records are separate.
        DBFLEET_TENANT_POSTGRES_URL: process.env.DBFLEET_CONTROL_DATABASE_URL!,
        DBFLEET_FILE_ROOTS: path.join(tmp, '{tenant}'),
        ...extraEnv,
      };
      const env = loadEnv(vars);
      const config: DbfleetConfig = { migrations: folders };
      const configFile = path.join(tmp, 'dbfleet.config.ts');
      await writeFile(configFile, `export default ${JSON.stringify(config)};\n`);
      const deps = createDeps(env, config, createLogger(env.DBFLEET_LOG_LEVEL));
      await deps.control.migrate();
      const client = createClient({ redis: deps.redis, prefix: deps.prefix });
      const entry = { deps, db, tenants: [] as AddedTenant[], workers: [] as FleetWorker[], client };
      made.push(entry);
      const write = async (more: MigrationFiles) => {
        for (const store of ['postgres', 'mongo'] as const)
          for (const [name, text] of Object.entries(more[store] ?? {}))
            await writeFile(path.join(folders[store], name), text);
      };
      await write(files);
      return {
        env,
        deps,
        folders,
        write,
        configFile,
        client,
        startWorker(options = {}) {
          const worker = startWorker(deps, { handlers, concurrency: 2, ...options });
          entry.workers.push(worker);
          return worker;
        },
        async addTenants(ids, options = {}) {
          const added: AddedTenant[] = [];
          for (const id of ids) added.push(await addTenant(deps, id, { migrate: options.migrate ?? false }));
          entry.tenants.push(...added);
          return added;
        },
      };
    });
    for (const { deps, db, tenants, workers, client } of made) {
      await Promise.all(workers.map((w) => w.close(5_000)));
      await client.close();
      for (const t of tenants) await dropTenantData(t);
      // Its queues' keys go with it (its control database is dropped below): left behind, each run
      // of the suite added a few hundred keys to a long-lived development Redis.
      await deleteKeysUnder(deps.redis, deps.prefix);
      await closeDeps(deps);
      const c = admin();
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
      await c.end();
    }
  },
});

export { expect } from 'vitest';
export { eventually, uniqueId, ROOT } from './fixtures.ts';
