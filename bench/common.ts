/** What every bench shares: its fleet connections, its tenants, psql, settling the disks, medians. */
import { execFileSync } from 'node:child_process';
import { loadEnv } from '../src/config/env.ts';
import { dropTenantData, tenantStores } from '../src/control/provision.ts';
import { createLogger } from '../src/logger.ts';
import { createDeps, type FleetDeps } from '../src/runtime/deps.ts';
import config from '../dbfleet.config.ts';

/** The fleet's connections under a prefix of the bench's own (its Redis keys and control rows). */
export function newDeps(prefix: string): FleetDeps {
  const env = loadEnv({ ...process.env, DBFLEET_PREFIX: prefix, DBFLEET_LOG_LEVEL: 'warn' });
  return createDeps(env, config, createLogger('warn'));
}

/** Drops a bench tenant's schema and database and forgets it (its prefix's records go separately). */
export async function forgetBenchTenant(deps: FleetDeps, tenant: string): Promise<void> {
  await dropTenantData(tenantStores(deps, tenant));
  await deps.control.forgetTenant(tenant);
}

/** One statement through psql, stopping at the first error; returns what it printed, unaligned. */
export function psql(url: string, sql: string): string {
  return execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { stdio: 'pipe' })
    .toString()
    .trim();
}

/**
 * Before each timed side: a CHECKPOINT of each PostgreSQL cluster named and a `sync`, so that no
 * dirty pages wait to be written (PostgreSQL runs with fsync off here): a checkpoint or the kernel's
 * writeback landing inside one side's timing slowed that side by a quarter.
 */
export function settle(...clusterUrls: (string | undefined)[]): void {
  for (const url of clusterUrls) if (url) psql(url, 'CHECKPOINT');
  execFileSync('sync');
}

export const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
