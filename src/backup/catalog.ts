/**
 * The backup catalog (dbfleet.backups, control migration 8): one row per backup, per deployment,
 * written when a backup starts and when it ends, so that backups a crash left incomplete are found.
 * Only the manifest makes a backup restorable; the catalog is how operators and jobs find them.
 */
import type pg from 'pg';
import { PermanentError } from '../errors.ts';

export type BackupState = 'running' | 'complete' | 'failed' | 'deleted';

export interface BackupRow {
  backup_id: string;
  tenant: string;
  run_id: string;
  state: BackupState;
  destination: 's3' | 'local';
  manifest_key: string;
  key_id: string | null;
  started_at: Date;
  finished_at: Date | null;
  objects: number | null;
  records: string | null;
  stored_bytes: string | null;
  error_code: string | null;
  verified_at: Date | null;
  verify_result: string | null;
  updated_at: Date;
}

export class BackupCatalog {
  readonly #pool: pg.Pool;
  readonly #prefix: string;

  constructor(pool: pg.Pool, prefix: string) {
    this.#pool = pool;
    this.#prefix = prefix;
  }

  /**
   * Records a backup as running. Idempotent for its run (a retried job writes the same row again);
   * a backup id already taken by another run is refused.
   */
  async start(b: {
    backupId: string;
    tenant: string;
    runId: string;
    destination: 's3' | 'local';
    manifestKey: string;
    keyId: string | null;
  }): Promise<void> {
    const { rowCount } = await this.#pool.query(
      `INSERT INTO dbfleet.backups (prefix, backup_id, tenant, run_id, state, destination, manifest_key, key_id)
       VALUES ($1, $2, $3, $4, 'running', $5, $6, $7)
       ON CONFLICT (prefix, backup_id) DO UPDATE SET state = 'running', error_code = NULL
         WHERE backups.run_id = EXCLUDED.run_id AND backups.state NOT IN ('complete', 'deleted')`,
      [this.#prefix, b.backupId, b.tenant, b.runId, b.destination, b.manifestKey, b.keyId],
    );
    if (rowCount !== 1) {
      const existing = await this.get(b.backupId);
      if (existing?.run_id !== b.runId) throw new Error(`backup id ${b.backupId} belongs to another run`);
      // Deleted (pruned or taken for abandoned) while its retry waited: its objects are gone, and a
      // retry that reused the ones it remembers would complete a backup missing them.
      if (existing.state === 'deleted')
        throw new PermanentError(
          'backup_withdrawn',
          `backup ${b.backupId} was deleted while its retry waited; enqueue a new backup`,
        );
    }
  }

  /** A running backup's heartbeat, after each object: a crashed one stops touching its row. */
  async touch(backupId: string, totals: { objects: number; storedBytes: number }): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.backups SET updated_at = now(), objects = $3, stored_bytes = $4
       WHERE prefix = $1 AND backup_id = $2 AND state = 'running'`,
      [this.#prefix, backupId, totals.objects, totals.storedBytes],
    );
  }

  /**
   * Marks a backup complete, once its manifest is written. False when the row is no longer running
   * (an operator deleted it as abandoned, or it was marked failed): the backup must not count.
   */
  async complete(
    backupId: string,
    totals: { objects: number; records: number; storedBytes: number },
  ): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `UPDATE dbfleet.backups SET state = 'complete', finished_at = coalesce(finished_at, now()), updated_at = now(),
              objects = $3, records = $4, stored_bytes = $5, error_code = NULL
       WHERE prefix = $1 AND backup_id = $2 AND state IN ('running', 'complete')`,
      [this.#prefix, backupId, totals.objects, totals.records, totals.storedBytes],
    );
    return rowCount === 1;
  }

  /** Marks a backup failed, by the code of its failure only. */
  async fail(backupId: string, errorCode: string): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.backups SET state = 'failed', finished_at = now(), updated_at = now(), error_code = $3
       WHERE prefix = $1 AND backup_id = $2 AND state = 'running'`,
      [this.#prefix, backupId, errorCode],
    );
  }

  async get(backupId: string): Promise<BackupRow | undefined> {
    const { rows } = await this.#pool.query<BackupRow>(
      'SELECT * FROM dbfleet.backups WHERE prefix = $1 AND backup_id = $2',
      [this.#prefix, backupId],
    );
    return rows[0];
  }

  /** A tenant's backups, newest first. */
  async list(tenant: string): Promise<BackupRow[]> {
    const { rows } = await this.#pool.query<BackupRow>(
      'SELECT * FROM dbfleet.backups WHERE prefix = $1 AND tenant = $2 ORDER BY started_at DESC, backup_id',
      [this.#prefix, tenant],
    );
    return rows;
  }

  /**
   * Backups that will never complete: failed ones, and running ones whose heartbeat stopped more than
   * `quietMs` ago (their worker crashed and no retry picked them up). Their objects can be deleted.
   */
  async incomplete(tenant: string | undefined, quietMs: number): Promise<BackupRow[]> {
    const { rows } = await this.#pool.query<BackupRow>(
      `SELECT * FROM dbfleet.backups WHERE prefix = $1 AND ($2::text IS NULL OR tenant = $2)
         AND (state = 'failed' OR (state = 'running' AND updated_at < now() - make_interval(secs => $3)))
       ORDER BY started_at`,
      [this.#prefix, tenant ?? null, quietMs / 1000],
    );
    return rows;
  }

  /**
   * Records what a verify found (`ok`, or the fault's code) on the tenant's backup of that id: a job
   * naming another tenant with this id cannot mark this backup bad.
   */
  async recordVerify(tenant: string, backupId: string, result: string): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.backups SET verified_at = now(), verify_result = $4
       WHERE prefix = $1 AND backup_id = $2 AND tenant = $3`,
      [this.#prefix, backupId, tenant, result],
    );
  }

  /**
   * Claims a backup for deletion: marks it deleted only if its row is still as the caller saw it
   * (same state, same heartbeat, to the millisecond a reading carries). False when it moved meanwhile (a retry took it up again): keep it.
   */
  async claimForDeletion(row: Pick<BackupRow, 'backup_id' | 'state' | 'updated_at'>): Promise<boolean> {
    const { rowCount } = await this.#pool.query(
      `UPDATE dbfleet.backups SET state = 'deleted', updated_at = now()
       WHERE prefix = $1 AND backup_id = $2 AND state = $3 AND date_trunc('milliseconds', updated_at) = $4`,
      [this.#prefix, row.backup_id, row.state, row.updated_at],
    );
    return rowCount === 1;
  }
}
