/** `dbfleet tenants add`: register a tenant, create its PostgreSQL schema and MongoDB database, migrate them. */
import type { Db } from 'mongodb';
import { quoteIdent } from '../stores/identifiers.ts';
import { collectionExists } from '../stores/mongo.ts';
import { migrateTenant, type TenantOutcome } from '../migrations/migrator.ts';
import { tenantPostgres, type TenantPostgres } from '../stores/postgres.ts';
import type { FleetDeps } from '../runtime/deps.ts';

export interface TenantStores {
  namespace: string;
  pg: TenantPostgres;
  mongo: Db;
}

/** A tenant's PostgreSQL schema and MongoDB database, for setup code (handlers get theirs in ctx). */
export function tenantStores(deps: FleetDeps, id: string): TenantStores {
  const at = deps.tenants.locate(id); // validates the id
  return {
    namespace: at.namespace,
    pg: tenantPostgres(deps.postgres.pool(at.postgresUrl), at.namespace),
    mongo: deps.mongo.db(at.mongoUrl, at.namespace),
  };
}

export interface AddedTenant extends TenantStores {
  created: boolean;
  /** What migrating the new tenant to the latest version did (absent with `migrate: false`). */
  migrated?: TenantOutcome;
}

/**
 * Registers a tenant, creates its schema and database, and brings both to the latest migration (the
 * config module's folders), unless `migrate: false`. Safe to repeat.
 */
export async function addTenant(
  deps: FleetDeps,
  id: string,
  options: { migrate?: boolean; requestedBy?: string } = {},
): Promise<AddedTenant> {
  const stores = tenantStores(deps, id);
  await stores.pg.withClient((c) => c.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(stores.namespace)}`));
  // A MongoDB database exists once it holds a collection.
  if (!(await collectionExists(stores.mongo, '_dbfleet_meta')))
    await stores.mongo.createCollection('_dbfleet_meta').catch((err: { code?: number }) => {
      if (err.code !== 48) throw err; // NamespaceExists: another process created it first
    });
  const created = await deps.control.addTenant(id);
  if (options.migrate === false) return { created, ...stores };
  const migrated = await migrateTenant(deps, id, {
    action: 'apply',
    direction: 'up',
    dryRun: false,
    store: 'both',
    jobId: null,
    requestedBy: options.requestedBy ?? 'tenants add',
  });
  return { created, migrated, ...stores };
}

/** Drops a tenant's schema and database (its control-database records stay): for tests and benches. */
export async function dropTenantData(stores: TenantStores): Promise<void> {
  await stores.pg.withClient((c) => c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(stores.namespace)} CASCADE`));
  await stores.mongo.dropDatabase();
}
