/**
 * Migrating one tenant: both stores, one after the other, each under its own lock. Used by the
 * migrate job's handler, by `dbfleet migrate --local`, and by `dbfleet tenants add`.
 */
import path from 'node:path';
import type { DbfleetConfig } from '../config/define.ts';
import { PermanentError, TransientError, classifyError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { withPoolClient } from '../stores/postgres.ts';
import { quoteIdent } from '../stores/identifiers.ts';
import { loadMigrations } from './files.ts';
import { mongoTarget } from './mongo-target.ts';
import { postgresTarget } from './postgres-target.ts';
import { runStore, type MigrateRequest, type StoreOutcome } from './run-store.ts';
import type { MigrationStore, MongoMigrationContext, PostgresMigrationContext } from './types.ts';

export interface TenantMigrateRequest extends MigrateRequest {
  store: MigrationStore | 'both';
}

export interface TenantOutcome {
  tenant: string;
  stores: StoreOutcome[];
}

export function migrationFolder(config: DbfleetConfig, store: MigrationStore): string | undefined {
  const folder = config.migrations?.[store];
  return folder === undefined ? undefined : path.resolve(folder);
}

export async function migrateTenant(
  deps: FleetDeps,
  tenant: string,
  req: TenantMigrateRequest,
  log: Logger = deps.log,
): Promise<TenantOutcome> {
  const at = deps.tenants.locate(tenant);
  const stores = (req.store === 'both' ? ['postgres', 'mongo'] : [req.store]) as MigrationStore[];
  const outcomes: StoreOutcome[] = [];
  const failures: { store: MigrationStore; err: unknown }[] = [];
  for (const store of stores) {
    const folder = migrationFolder(deps.config, store);
    if (!folder) {
      if (req.store !== 'both')
        throw new PermanentError('no_migrations', `the config module sets no ${store} migrations folder`);
      continue;
    }
    try {
      if (store === 'postgres') {
        const migrations = await loadMigrations<PostgresMigrationContext>(folder, 'postgres');
        const pool = deps.postgres.pool(at.postgresUrl);
        outcomes.push(
          await withPoolClient(pool, async (client) => {
            await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(at.namespace)}`);
            await client.query(`SET search_path TO ${quoteIdent(at.namespace)}`);
            const target = postgresTarget({
              tenant,
              schema: at.namespace,
              client,
              log,
              lockWaitMs: deps.env.DBFLEET_MIGRATE_LOCK_WAIT_MS,
            });
            try {
              return await runStore(target, migrations, req);
            } finally {
              await client.query('RESET search_path').catch(() => undefined);
            }
          }),
        );
      } else {
        const migrations = await loadMigrations<MongoMigrationContext>(folder, 'mongo');
        const target = mongoTarget({
          tenant,
          db: deps.mongo.db(at.mongoUrl, at.namespace),
          log,
          leaseMs: deps.env.DBFLEET_MIGRATE_LEASE_MS,
          lockWaitMs: deps.env.DBFLEET_MIGRATE_LOCK_WAIT_MS,
          holder: req.jobId ? `job ${req.jobId}` : `pid ${process.pid}`,
        });
        outcomes.push(await runStore(target, migrations, req));
      }
    } catch (err) {
      // The other store still runs: its migrations are independent of this one's.
      failures.push({ store, err });
    }
  }
  if (failures.length) {
    const [first] = failures;
    if (failures.length === 1) throw first!.err;
    const message = failures.map((f) => `${f.store}: ${classifyError(f.err).message}`).join('; ');
    const transient = failures.some((f) => classifyError(f.err).kind === 'transient');
    throw transient
      ? new TransientError(classifyError(first!.err).code, message)
      : new PermanentError(classifyError(first!.err).code, message);
  }
  return { tenant, stores: outcomes };
}
