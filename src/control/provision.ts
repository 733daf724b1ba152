/** `dbfleet tenants add`: register a tenant and create its PostgreSQL schema and MongoDB database. */
import { quoteIdent } from '../stores/identifiers.ts';
import type { FleetDeps } from '../runtime/deps.ts';

export async function addTenant(
  deps: FleetDeps,
  id: string,
): Promise<{ created: boolean; namespace: string }> {
  const location = deps.tenants.locate(id); // validates the id
  await deps.postgres
    .pool(location.postgresUrl)
    .query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(location.namespace)}`);
  // A MongoDB database exists once it holds a collection.
  const db = deps.mongo.db(location.mongoUrl, location.namespace);
  const names = (await db.listCollections({ name: '_dbfleet_meta' }, { nameOnly: true }).toArray()).length;
  if (names === 0)
    await db.createCollection('_dbfleet_meta').catch((err: { code?: number }) => {
      if (err.code !== 48) throw err; // NamespaceExists: another process created it first
    });
  const created = await deps.control.addTenant(id);
  return { created, namespace: location.namespace };
}
