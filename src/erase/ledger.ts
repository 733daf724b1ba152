/**
 * The erasure ledger (dbfleet.erasures, control migration 10): one row per erasure asked for, written
 * before anything is changed and completed with the counts and the verify pass. Receipts are made
 * from it: JSON an operator can hand to the person or the data-protection officer, authenticated
 * with the ledger key, naming the subject only by its keyed hash.
 */
import { timingSafeEqual } from 'node:crypto';
import type pg from 'pg';
import type { LedgerKeys } from './ledger-keys.ts';

export interface LocationOutcome {
  store: 'postgres' | 'mongo';
  name: string;
  action: 'delete' | 'anonymise';
  /** Rows or documents deleted or anonymised (a dry run: that would be). */
  count: number;
}

export interface ErasureRow {
  erasure_id: string;
  tenant: string;
  requested_by: string | null;
  subject_hash: string;
  subject_sealed: string;
  key_id: string;
  state: 'running' | 'complete' | 'failed';
  requested_at: Date;
  finished_at: Date | null;
  locations: LocationOutcome[] | null;
  deleted: string | null;
  anonymised: string | null;
  verified: boolean | null;
  error_code: string | null;
}

export interface Receipt {
  format: 'dbfleet-erasure-receipt/1';
  erasureId: string;
  tenant: string;
  /** The subject, as the ledger knows it: HMAC-SHA256 of tenant and subject id under the ledger key. */
  subject: string;
  requestedBy: string | null;
  requestedAt: string;
  completedAt: string;
  locations: LocationOutcome[];
  verified: boolean;
  keyId: string;
  /** HMAC-SHA256 (base64url) of the receipt's other fields, as canonical JSON, under the receipt key. */
  mac: string;
}

/** The ledger's aad for a sealed subject id: binds it to its erasure and tenant. */
export const sealBinding = (erasureId: string, tenant: string) => `${erasureId}\0${tenant}`;

export class ErasureLedger {
  readonly #pool: pg.Pool;
  readonly #prefix: string;

  constructor(pool: pg.Pool, prefix: string) {
    this.#pool = pool;
    this.#prefix = prefix;
  }

  /** Records the request before anything changes. Idempotent for the erasure. */
  async begin(e: {
    erasureId: string;
    tenant: string;
    requestedBy: string | undefined;
    subjectHash: string;
    subjectSealed: string;
    keyId: string;
  }): Promise<void> {
    await this.#pool.query(
      `INSERT INTO dbfleet.erasures (prefix, erasure_id, tenant, requested_by, subject_hash, subject_sealed, key_id, state)
       VALUES ($1, $2, $3, $4, $5, $6, $7, 'running')
       ON CONFLICT (prefix, erasure_id) DO UPDATE SET state = 'running', error_code = NULL
         WHERE erasures.state <> 'complete'`,
      [this.#prefix, e.erasureId, e.tenant, e.requestedBy ?? null, e.subjectHash, e.subjectSealed, e.keyId],
    );
  }

  async complete(erasureId: string, locations: LocationOutcome[], verified: boolean): Promise<void> {
    const sum = (a: string) => locations.filter((l) => l.action === a).reduce((n, l) => n + l.count, 0);
    await this.#pool.query(
      `UPDATE dbfleet.erasures SET state = 'complete', finished_at = now(), locations = $3,
              deleted = $4, anonymised = $5, verified = $6, error_code = NULL
       WHERE prefix = $1 AND erasure_id = $2`,
      [this.#prefix, erasureId, JSON.stringify(locations), sum('delete'), sum('anonymise'), verified],
    );
  }

  async fail(erasureId: string, code: string): Promise<void> {
    await this.#pool.query(
      `UPDATE dbfleet.erasures SET state = 'failed', finished_at = now(), error_code = $3
       WHERE prefix = $1 AND erasure_id = $2 AND state <> 'complete'`,
      [this.#prefix, erasureId, code],
    );
  }

  async get(erasureId: string): Promise<ErasureRow | undefined> {
    const { rows } = await this.#pool.query<ErasureRow>(
      `SELECT * FROM dbfleet.erasures WHERE prefix = $1 AND erasure_id = $2`,
      [this.#prefix, erasureId],
    );
    return rows[0];
  }

  /** Newest first; by tenant and by subject hashes (one per ledger key) when given. */
  async list(o: { tenant?: string; subjectHashes?: string[]; limit?: number } = {}): Promise<ErasureRow[]> {
    const { rows } = await this.#pool.query<ErasureRow>(
      `SELECT * FROM dbfleet.erasures
       WHERE prefix = $1 AND ($2::text IS NULL OR tenant = $2) AND ($3::text[] IS NULL OR subject_hash = ANY($3))
       ORDER BY requested_at DESC LIMIT $4`,
      [this.#prefix, o.tenant ?? null, o.subjectHashes ?? null, o.limit ?? 100],
    );
    return rows;
  }

  /**
   * What a restore applies again: the tenant's erasures asked for and not failed (a failed one
   * changed nothing to keep, or is erased again once its cause is fixed), except those finished
   * before `since` (the backup's start: its data already lacks them, and an id since given to
   * someone new must not be erased again).
   */
  async toReapply(tenant: string, since: Date): Promise<ErasureRow[]> {
    const { rows } = await this.#pool.query<ErasureRow>(
      `SELECT * FROM dbfleet.erasures
       WHERE prefix = $1 AND tenant = $2 AND state <> 'failed' AND (finished_at IS NULL OR finished_at >= $3)
       ORDER BY requested_at, erasure_id`,
      [this.#prefix, tenant, since],
    );
    return rows;
  }
}

const canonical = (value: unknown): string =>
  Array.isArray(value)
    ? `[${value.map(canonical).join(',')}]`
    : value && typeof value === 'object'
      ? `{${Object.keys(value)
          .sort()
          .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
          .join(',')}}`
      : JSON.stringify(value);

export function receiptOf(row: ErasureRow, keys: LedgerKeys): Receipt {
  if (row.state !== 'complete') throw new Error(`erasure ${row.erasure_id} is ${row.state}: no receipt yet`);
  const body: Omit<Receipt, 'mac'> = {
    format: 'dbfleet-erasure-receipt/1',
    erasureId: row.erasure_id,
    tenant: row.tenant,
    subject: row.subject_hash,
    requestedBy: row.requested_by,
    requestedAt: row.requested_at.toISOString(),
    completedAt: row.finished_at!.toISOString(),
    locations: row.locations ?? [],
    verified: row.verified === true,
    keyId: row.key_id,
  };
  return { ...body, mac: keys.mac(canonical(body), row.key_id) };
}

/** Whether a receipt is one the ledger key made, unchanged. */
export function receiptIsAuthentic(receipt: Receipt, keys: LedgerKeys): boolean {
  const { mac, ...body } = receipt;
  try {
    const want = Buffer.from(keys.mac(canonical(body), receipt.keyId));
    const got = Buffer.from(typeof mac === 'string' ? mac : '');
    return got.length === want.length && timingSafeEqual(got, want);
  } catch {
    return false;
  }
}
