/**
 * Backups and restores take the same locks as migrations of the tenant, so the three never overlap:
 * in PostgreSQL the migration's advisory lock (shared by a backup, which only reads, so two backups
 * may run together; exclusive for a restore), in MongoDB the migration's lease lock.
 */
import type { Db } from 'mongodb';
import type pg from 'pg';
import { LeaseLock } from './lease-lock.ts';

export interface LockSettings {
  /** Give up (a transient error: the job retries later) after waiting this long for a migration. */
  waitMs: number;
  /** MongoDB lease: a killed holder's lock is taken over this long after its last renewal. */
  leaseMs: number;
  holder: string;
}

/** The deployment's lock settings (DBFLEET_MIGRATE_LOCK_WAIT_MS, DBFLEET_MIGRATE_LEASE_MS) for `holder`. */
export function tenantLockSettings(
  env: { DBFLEET_MIGRATE_LOCK_WAIT_MS: number; DBFLEET_MIGRATE_LEASE_MS: number },
  holder: string,
): LockSettings {
  return { waitMs: env.DBFLEET_MIGRATE_LOCK_WAIT_MS, leaseMs: env.DBFLEET_MIGRATE_LEASE_MS, holder };
}

const KEY = `hashtext('dbfleet.migrate'), hashtext($1)`;

/**
 * Runs `fn` holding the migration lock of `schema` on `client`'s session (PostgreSQL releases it
 * by itself if the session dies with a killed worker).
 */
export async function withPostgresTenantLock<T>(
  client: pg.PoolClient,
  schema: string,
  mode: 'shared' | 'exclusive',
  waitMs: number,
  fn: () => Promise<T>,
): Promise<T> {
  const suffix = mode === 'shared' ? '_shared' : '';
  // PostgreSQL frees a session's advisory locks when the session ends, but notices a vanished client
  // mid-statement only if asked to look: a killed holder's lock must not outlive it.
  await client.query(`SET client_connection_check_interval = 1000`);
  await client.query(`SET lock_timeout = ${Math.round(waitMs)}`);
  try {
    await client.query(`SELECT pg_advisory_lock${suffix}(${KEY})`, [schema]);
  } finally {
    await client.query('RESET lock_timeout');
  }
  try {
    return await fn();
  } finally {
    await client.query(`SELECT pg_advisory_unlock${suffix}(${KEY})`, [schema]).catch(() => undefined);
  }
}

/** Runs `fn` holding the tenant database's migration lease; its signal fires if the lease is lost. */
export function withMongoTenantLock<T>(
  db: Db,
  settings: LockSettings,
  fn: (signal: AbortSignal) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const lock = new LeaseLock(db, 'migrate', {
    leaseMs: settings.leaseMs,
    waitMs: settings.waitMs,
    holder: settings.holder,
  });
  return lock.hold(fn, signal);
}
