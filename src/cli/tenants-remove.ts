/**
 * `dbfleet tenants remove <id...> [--drop-data [--confirm]]`. Unregistering is what refuses the
 * tenant's jobs; dropping its data is a separate, confirmed step, since it cannot be undone.
 */
import { dropTenantData, tenantStores } from '../control/provision.ts';
import { redactUrl } from '../logger.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { KNOWN_TENANT_TTL_MS } from '../tenants.ts';

/**
 * The exit code of `--drop-data` without `--confirm`: nothing was done, and a script that forgot
 * the flag must not take that for success.
 */
export const NOT_CONFIRMED = 2;

export interface RemoveOptions {
  dropData: boolean;
  confirm: boolean;
}

/** Checks every id before changing anything, so that a typo in one leaves all of them alone. */
async function assertRegistered(deps: FleetDeps, ids: string[]): Promise<void> {
  // Listed, whatever their status: a removal that failed halfway is run again.
  const registered = new Set((await deps.control.listTenants()).map((t) => t.id));
  const unknown = ids.filter((id) => !registered.has(id));
  if (unknown.length > 0)
    throw new Error(
      `no such tenant: ${unknown.join(', ')} (nothing changed; dbfleet tenants list shows the tenants)`,
    );
}

function whatWouldBeDropped(deps: FleetDeps, id: string): string {
  const at = deps.tenants.locate(id);
  return (
    `${id}: would drop PostgreSQL schema ${at.namespace} (${redactUrl(at.postgresUrl)}) and ` +
    `MongoDB database ${at.namespace} (${redactUrl(at.mongoUrl)}), and unregister it`
  );
}

/**
 * Marks the tenant as being removed (its jobs are refused from then on, by running workers within
 * their cache's lifetime), drops the data, and unregisters last: a failure halfway leaves the tenant
 * registered, so the same command can simply be run again (both drops are idempotent).
 */
async function removeOne(deps: FleetDeps, id: string, dropData: boolean): Promise<string> {
  const { namespace } = deps.tenants.locate(id);
  if (dropData) {
    await deps.control.markTenantRemoving(id);
    await dropTenantData(tenantStores(deps, id));
  }
  await deps.control.forgetTenant(id);
  const refused = `its jobs are refused from now on (by running workers within ${KNOWN_TENANT_TTL_MS / 1000} s)`;
  return dropData
    ? `${id}: removed; dropped PostgreSQL schema ${namespace} and MongoDB database ${namespace}; ${refused}`
    : `${id}: removed; ${refused}; its PostgreSQL schema and MongoDB database ${namespace} are kept`;
}

/** Returns the exit code: 0 when done, NOT_CONFIRMED when --drop-data lacked --confirm. */
export async function removeTenants(deps: FleetDeps, ids: string[], o: RemoveOptions): Promise<number> {
  await assertRegistered(deps, ids);
  if (o.dropData && !o.confirm) {
    for (const id of ids) console.log(whatWouldBeDropped(deps, id));
    console.error('nothing changed: add --confirm to drop the data and unregister');
    return NOT_CONFIRMED;
  }
  for (const id of ids) console.log(await removeOne(deps, id, o.dropData));
  return 0;
}
