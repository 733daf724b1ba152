/** The fleet's own records in PostgreSQL: tenants, the audit log of every job, load rejections. */
import type pg from 'pg';
import { inTransaction, withPoolClient } from '../stores/postgres.ts';
import { controlMigrations } from './migrations.ts';

export type JobStatus = 'active' | 'completed' | 'failed' | 'retrying' | 'interrupted';

export interface JobRunRow {
  queue: string;
  job_id: string;
  tenant: string;
  requested_by: string | null;
  payload_digest: string;
  status: JobStatus;
  attempts: number;
  duration_ms: number | null;
  result_summary: unknown;
  error_code: string | null;
  error_message: string | null;
  run_id: string | null;
}

// Arbitrary constant: the advisory lock that serialises control-schema migrations.
const MIGRATION_LOCK = 7_310_422_001;

export class ControlDb {
  readonly pool: pg.Pool;
  /** The deployment (DBFLEET_PREFIX) whose tenants this instance sees. */
  readonly prefix: string;

  constructor(pool: pg.Pool, prefix: string) {
    this.pool = pool;
    this.prefix = prefix;
  }

  /** Brings the control schema to the latest version; safe to call from every process at start. */
  async migrate(): Promise<number[]> {
    return withPoolClient(this.pool, async (client) => {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await client.query('CREATE SCHEMA IF NOT EXISTS dbfleet');
        await client.query(`CREATE TABLE IF NOT EXISTS dbfleet.schema_history (
          version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
        const { rows } = await client.query<{ version: number }>(
          'SELECT version FROM dbfleet.schema_history',
        );
        const applied = new Set(rows.map((r) => r.version));
        const done: number[] = [];
        for (const m of controlMigrations) {
          if (applied.has(m.version)) continue;
          await inTransaction(client, async () => {
            await client.query(m.sql);
            await client.query('INSERT INTO dbfleet.schema_history (version, name) VALUES ($1, $2)', [
              m.version,
              m.name,
            ]);
          });
          done.push(m.version);
        }
        return done;
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
      }
    });
  }

  // Tenants are this deployment's (its prefix) or shared (prefix '': registered before deployments
  // were told apart, and never used by one; see control migration 5).

  /** Registers a tenant for this deployment; false if it was already there (its own or shared). */
  async addTenant(id: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `INSERT INTO dbfleet.tenants (prefix, id) SELECT $1, $2
       WHERE NOT EXISTS (SELECT 1 FROM dbfleet.tenants WHERE prefix IN ($1, '') AND id = $2)
       ON CONFLICT DO NOTHING`,
      [this.prefix, id],
    );
    return rowCount === 1;
  }

  /** This deployment's tenants, and the shared ones. */
  async listTenants(): Promise<{ id: string; created_at: Date; status: string }[]> {
    return (
      await this.pool.query(
        `SELECT DISTINCT ON (id) id, created_at, status FROM dbfleet.tenants
         WHERE prefix IN ($1, '') ORDER BY id, prefix DESC`,
        [this.prefix],
      )
    ).rows;
  }

  /**
   * Deletes a tenant's registration (its data goes with dropTenantData); true if it was registered.
   * A shared tenant's registration goes for every deployment.
   */
  async forgetTenant(id: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `DELETE FROM dbfleet.tenants WHERE prefix IN ($1, '') AND id = $2`,
      [this.prefix, id],
    );
    return (rowCount ?? 0) > 0;
  }

  /** Stops the tenant's jobs from running (they fail as unknown) while its data is being dropped. */
  async markTenantRemoving(id: string): Promise<void> {
    await this.pool.query(
      `UPDATE dbfleet.tenants SET status = 'removing' WHERE prefix IN ($1, '') AND id = $2`,
      [this.prefix, id],
    );
  }

  /** Whether the tenant is registered for this deployment (or shared) and not being removed. */
  async tenantExists(id: string): Promise<boolean> {
    const { rowCount } = await this.pool.query(
      `SELECT 1 FROM dbfleet.tenants WHERE prefix IN ($1, '') AND id = $2 AND status = 'active'`,
      [this.prefix, id],
    );
    return (rowCount ?? 0) > 0;
  }

  /**
   * A job's audit row: of the run given, or of its latest run (a job id may name several runs over
   * time).
   */
  async jobRun(prefix: string, queue: string, jobId: string, runId?: string): Promise<JobRunRow | undefined> {
    const { rows } = await this.pool.query<JobRunRow>(
      `SELECT * FROM dbfleet.job_runs WHERE prefix = $1 AND queue = $2 AND job_id = $3
         AND ($4::text IS NULL OR run_id = $4) ORDER BY updated_at DESC LIMIT 1`,
      [prefix, queue, jobId, runId ?? null],
    );
    return rows[0];
  }

  /** Idempotent: a retried batch records the same (run, line) pairs again without duplicates. */
  async recordRejections(
    run: { prefix: string; jobId: string; runId: string; tenant: string },
    rejections: { line: number; reason: string }[],
  ): Promise<void> {
    if (rejections.length === 0) return;
    await this.pool.query(
      `INSERT INTO dbfleet.load_rejections (prefix, job_id, run_id, tenant, line, reason)
       SELECT $1, $2, $3, $4, * FROM unnest($5::bigint[], $6::text[]) ON CONFLICT DO NOTHING`,
      [
        run.prefix,
        run.jobId,
        run.runId,
        run.tenant,
        rejections.map((r) => r.line),
        rejections.map((r) => r.reason),
      ],
    );
  }

  /** A run's rejections, by line. */
  async rejections(runId: string, limit = 1000): Promise<{ line: number; reason: string }[]> {
    const { rows } = await this.pool.query<{ line: string; reason: string }>(
      'SELECT line, reason FROM dbfleet.load_rejections WHERE run_id = $1 ORDER BY line LIMIT $2',
      [runId, limit],
    );
    return rows.map((r) => ({ line: Number(r.line), reason: r.reason }));
  }

  /** How many audit stream entries of this prefix the drainer moved to dbfleet.audit_dead_letters. */
  async auditDeadLetters(prefix: string): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(
      'SELECT count(*) AS n FROM dbfleet.audit_dead_letters WHERE prefix = $1',
      [prefix],
    );
    return Number(rows[0]!.n);
  }

  /**
   * Deletes a prefix's audit events, drain cursor, audit dead letters and rejections (a finished
   * test's or benchmark's).
   */
  async forgetPrefix(prefix: string): Promise<void> {
    await this.pool.query(
      `WITH events AS (DELETE FROM dbfleet.job_event_log WHERE prefix = $1),
            cursor AS (DELETE FROM dbfleet.audit_cursor WHERE prefix = $1),
            dead AS (DELETE FROM dbfleet.audit_dead_letters WHERE prefix = $1),
            backups AS (DELETE FROM dbfleet.backups WHERE prefix = $1),
            restores AS (DELETE FROM dbfleet.restores WHERE prefix = $1),
            erasures AS (DELETE FROM dbfleet.erasures WHERE prefix = $1),
            exports AS (DELETE FROM dbfleet.subject_exports WHERE prefix = $1)
       DELETE FROM dbfleet.load_rejections WHERE prefix = $1`,
      [prefix],
    );
  }
}
