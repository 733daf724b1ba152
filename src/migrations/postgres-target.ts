/**
 * Migrations in a tenant's PostgreSQL schema. The lock is a session advisory lock keyed by the schema:
 * PostgreSQL releases it by itself when the session dies, so a killed runner never leaves it behind.
 * History lives in `_dbfleet_migrations` in the tenant's schema; each migration commits together with
 * its history row, unless it is marked `transaction: false`.
 */
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import { inTransaction } from '../stores/postgres.ts';
import { postgresBackfill } from './backfill.ts';
import { withPostgresTenantLock } from './tenant-locks.ts';
import type { MigrationTarget, RunMeta } from './run-store.ts';
import type { AppliedMigration, Migration, PostgresMigrationContext } from './types.ts';

const HISTORY = `CREATE TABLE IF NOT EXISTS _dbfleet_migrations (
  version       numeric PRIMARY KEY,
  name          text NOT NULL,
  checksum      text NOT NULL,
  applied_at    timestamptz NOT NULL DEFAULT now(),
  duration_ms   integer NOT NULL DEFAULT 0,
  job_id        text,
  requested_by  text,
  baseline      boolean NOT NULL DEFAULT false)`;

interface HistoryRow {
  version: string;
  name: string;
  checksum: string;
  applied_at: Date;
  duration_ms: number;
  job_id: string | null;
  requested_by: string | null;
  baseline: boolean;
}

export interface PostgresTargetOptions {
  tenant: string;
  schema: string;
  /** A client with `search_path` set to the tenant's schema, held for the whole run. */
  client: pg.PoolClient;
  log: Logger;
  lockWaitMs: number;
}

export function postgresTarget(o: PostgresTargetOptions): MigrationTarget<PostgresMigrationContext> {
  const { client } = o;
  const record = (m: Migration<PostgresMigrationContext>, meta: RunMeta, ms: number, baseline = false) =>
    client.query(
      `INSERT INTO _dbfleet_migrations (version, name, checksum, duration_ms, job_id, requested_by, baseline)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [m.version, m.name, m.checksum, Math.round(ms), meta.jobId, meta.requestedBy, baseline],
    );
  const context = (
    m: Migration<PostgresMigrationContext>,
    signal: AbortSignal,
  ): PostgresMigrationContext => ({
    tenant: o.tenant,
    schema: o.schema,
    client,
    log: o.log,
    signal,
    backfill: postgresBackfill(client, m.transaction, { prefix: `${m.version}/`, signal, log: o.log }),
  });
  // A re-applied migration (after down) starts its backfills afresh.
  const clearBackfills = async (version: string) => {
    if ((await client.query(`SELECT to_regclass('_dbfleet_backfills') AS t`)).rows[0].t)
      await client.query(`DELETE FROM _dbfleet_backfills WHERE starts_with(name, $1)`, [`${version}/`]);
  };
  const run = (m: Migration<PostgresMigrationContext>, fn: () => Promise<void>) =>
    m.transaction ? inTransaction(client, fn) : fn();

  return {
    store: 'postgres',
    withLock(fn, signal) {
      return withPostgresTenantLock(client, o.schema, 'exclusive', o.lockWaitMs, async () => {
        await client.query(HISTORY);
        return fn(signal ?? new AbortController().signal);
      });
    },
    async history() {
      const exists = (await client.query(`SELECT to_regclass('_dbfleet_migrations') AS t`)).rows[0].t;
      if (!exists) return [];
      const { rows } = await client.query<HistoryRow>(
        'SELECT version::text, name, checksum, applied_at, duration_ms, job_id, requested_by, baseline FROM _dbfleet_migrations ORDER BY version',
      );
      return rows.map((r): AppliedMigration => ({
        version: r.version,
        name: r.name,
        checksum: r.checksum,
        appliedAt: r.applied_at,
        durationMs: r.duration_ms,
        jobId: r.job_id,
        requestedBy: r.requested_by,
        baseline: r.baseline,
      }));
    },
    async apply(m, meta, signal) {
      const started = performance.now();
      await run(m, async () => {
        await m.up(context(m, signal));
        await record(m, meta, performance.now() - started);
      });
      await clearBackfills(m.version);
    },
    async revert(m, signal) {
      await clearBackfills(m.version);
      await run(m, async () => {
        await m.down!(context(m, signal));
        await client.query('DELETE FROM _dbfleet_migrations WHERE version = $1', [m.version]);
      });
    },
    async setChecksum(version, checksum) {
      await client.query('UPDATE _dbfleet_migrations SET checksum = $2 WHERE version = $1', [
        version,
        checksum,
      ]);
    },
    async forget(version) {
      await client.query('DELETE FROM _dbfleet_migrations WHERE version = $1', [version]);
    },
    async recordBaseline(ms, meta) {
      await inTransaction(client, async () => {
        for (const m of ms) await record(m, meta, 0, true);
      });
    },
  };
}
