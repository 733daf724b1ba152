/**
 * The record of subject exports (dbfleet.subject_exports, control migration 10): one row per export,
 * written before its bundle is (so that a bundle a failed export left half-written is still found and
 * deleted at expiry), completed with its counts, and marked deleted by the sweep. The subject appears
 * only as its keyed hash (ledger-keys.ts), as in the erasure ledger.
 */
import type pg from 'pg';

export interface ExportRow {
  export_id: string;
  tenant: string;
  requested_by: string | null;
  subject_hash: string;
  destination: 's3' | 'local';
  object_key: string;
  key_id: string | null;
  /** Null until the bundle is written whole. */
  records: string | null;
  stored_bytes: string | null;
  created_at: Date;
  expires_at: Date;
  deleted_at: Date | null;
}

export class ExportRecords {
  readonly #pool: pg.Pool;
  readonly #prefix: string;

  constructor(pool: pg.Pool, prefix: string) {
    this.#pool = pool;
    this.#prefix = prefix;
  }

  /**
   * Records an export about to be written. Idempotent for the export: a retry (same export id, same
   * times, from the run's checkpoint) writes the row again; it is complete again once its bundle is.
   */
  async begin(e: {
    exportId: string;
    tenant: string;
    requestedBy: string | undefined;
    subjectHash: string;
    destination: 's3' | 'local';
    objectKey: string;
    keyId: string;
    createdAt: Date;
    expiresAt: Date;
  }): Promise<void> {
    await this.#pool.query(
      `INSERT INTO dbfleet.subject_exports
         (prefix, export_id, tenant, requested_by, subject_hash, destination, object_key, key_id, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
       ON CONFLICT (prefix, export_id) DO UPDATE SET records = NULL, stored_bytes = NULL`,
      [
        this.#prefix,
        e.exportId,
        e.tenant,
        e.requestedBy ?? null,
        e.subjectHash,
        e.destination,
        e.objectKey,
        e.keyId,
        e.createdAt,
        e.expiresAt,
      ],
    );
  }

  async complete(exportId: string, records: number, storedBytes: number): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.subject_exports SET records = $3, stored_bytes = $4 WHERE prefix = $1 AND export_id = $2`,
      [this.#prefix, exportId, records, storedBytes],
    );
  }

  async get(exportId: string): Promise<ExportRow | undefined> {
    const { rows } = await this.#pool.query<ExportRow>(
      `SELECT * FROM dbfleet.subject_exports WHERE prefix = $1 AND export_id = $2`,
      [this.#prefix, exportId],
    );
    return rows[0];
  }

  /** Newest first; a subject's exports are found by their hashes (one per ledger key). */
  async list(o: { tenant?: string; subjectHashes?: string[]; limit: number }): Promise<ExportRow[]> {
    const { rows } = await this.#pool.query<ExportRow>(
      `SELECT * FROM dbfleet.subject_exports WHERE prefix = $1
         AND ($2::text IS NULL OR tenant = $2) AND ($3::text[] IS NULL OR subject_hash = ANY($3))
       ORDER BY created_at DESC, export_id LIMIT $4`,
      [this.#prefix, o.tenant ?? null, o.subjectHashes ?? null, o.limit],
    );
    return rows;
  }

  /** Exports past their expiry whose bundle has not been deleted yet. */
  /** Of one tenant, or of all when none is named. */
  async expired(now: Date, tenant?: string): Promise<ExportRow[]> {
    const { rows } = await this.#pool.query<ExportRow>(
      `SELECT * FROM dbfleet.subject_exports
       WHERE prefix = $1 AND deleted_at IS NULL AND expires_at <= $2 AND ($3::text IS NULL OR tenant = $3)
       ORDER BY expires_at`,
      [this.#prefix, now, tenant ?? null],
    );
    return rows;
  }

  async markDeleted(exportId: string): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.subject_exports SET deleted_at = now()
       WHERE prefix = $1 AND export_id = $2 AND deleted_at IS NULL`,
      [this.#prefix, exportId],
    );
  }
}
