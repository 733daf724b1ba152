/**
 * The restore records (dbfleet.restores, control migration 9): one row per restore run, with what it
 * replaced. A restore renames the target's data aside instead of dropping it (a schema, and collections
 * under a name prefix); it stays there, recoverable, until dropped on purpose
 * (`dbfleet restores drop-replaced`).
 */
import type pg from 'pg';

export interface RestoreRow {
  run_id: string;
  backup_id: string;
  source_tenant: string;
  target_tenant: string;
  state: 'running' | 'complete' | 'failed';
  started_at: Date;
  finished_at: Date | null;
  replaced_schema: string | null;
  replaced_collections: string | null;
  replaced_dropped_at: Date | null;
  erasures_reapplied: number | null;
  error_code: string | null;
}

export class RestoreRecords {
  readonly #pool: pg.Pool;
  readonly #prefix: string;

  constructor(pool: pg.Pool, prefix: string) {
    this.#pool = pool;
    this.#prefix = prefix;
  }

  /** Idempotent for the run. */
  async start(r: { runId: string; backupId: string; source: string; target: string }): Promise<void> {
    await this.#pool.query(
      `INSERT INTO dbfleet.restores (prefix, run_id, backup_id, source_tenant, target_tenant, state)
       VALUES ($1, $2, $3, $4, $5, 'running')
       ON CONFLICT (prefix, run_id) DO UPDATE SET state = 'running', error_code = NULL
         WHERE restores.state <> 'complete'`,
      [this.#prefix, r.runId, r.backupId, r.source, r.target],
    );
  }

  /** Names what the swap moved aside (null: there was nothing there). Written before the swap. */
  async replacing(
    runId: string,
    replaced: { schema: string | null; collections: string | null },
  ): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.restores SET replaced_schema = $3, replaced_collections = $4 WHERE prefix = $1 AND run_id = $2`,
      [this.#prefix, runId, replaced.schema, replaced.collections],
    );
  }

  async complete(runId: string, erasuresReapplied: number): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.restores SET state = 'complete', finished_at = now(), erasures_reapplied = $3
       WHERE prefix = $1 AND run_id = $2`,
      [this.#prefix, runId, erasuresReapplied],
    );
  }

  async fail(runId: string, errorCode: string): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.restores SET state = 'failed', finished_at = now(), error_code = $3
       WHERE prefix = $1 AND run_id = $2 AND state = 'running'`,
      [this.#prefix, runId, errorCode],
    );
  }

  async get(runId: string): Promise<RestoreRow | undefined> {
    const { rows } = await this.#pool.query<RestoreRow>(
      'SELECT * FROM dbfleet.restores WHERE prefix = $1 AND run_id = $2',
      [this.#prefix, runId],
    );
    return rows[0];
  }

  /** Restores into `target` (all targets when absent), newest first. */
  async list(target?: string): Promise<RestoreRow[]> {
    const { rows } = await this.#pool.query<RestoreRow>(
      `SELECT * FROM dbfleet.restores WHERE prefix = $1 AND ($2::text IS NULL OR target_tenant = $2)
       ORDER BY started_at DESC`,
      [this.#prefix, target ?? null],
    );
    return rows;
  }

  async markDropped(runId: string): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.restores SET replaced_dropped_at = now() WHERE prefix = $1 AND run_id = $2`,
      [this.#prefix, runId],
    );
  }
}
