/** `dbfleet tenants add`: register a tenant and create its PostgreSQL schema and MongoDB database. */
import type { Db } from 'mongodb';
import { quoteIdent } from '../stores/identifiers.ts';
import { collectionExists } from '../stores/mongo.ts';
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

export async function addTenant(deps: FleetDeps, id: string): Promise<{ created: boolean } & TenantStores> {
  const stores = tenantStores(deps, id);
  await stores.pg.withClient((c) => c.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(stores.namespace)}`));
  // A MongoDB database exists once it holds a collection.
  if (!(await collectionExists(stores.mongo, '_dbfleet_meta')))
    await stores.mongo.createCollection('_dbfleet_meta').catch((err: { code?: number }) => {
      if (err.code !== 48) throw err; // NamespaceExists: another process created it first
    });
  const created = await deps.control.addTenant(id);
  return { created, ...stores };
}

/** Drops a tenant's schema and database (its control-database records stay): for tests and benches. */
export async function dropTenantData(stores: TenantStores): Promise<void> {
  await stores.pg.withClient((c) => c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(stores.namespace)} CASCADE`));
  await stores.mongo.dropDatabase();
}
