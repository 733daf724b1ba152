/**
 * What a migration is, whatever its store and file type. A migration file is loaded into one of these;
 * the runners only ever see this shape.
 */
import type { Db } from 'mongodb';
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import type { MongoBackfillOptions, BackfillOutcome, PostgresBackfillOptions } from './backfill.ts';

export type MigrationStore = 'postgres' | 'mongo';

export interface PostgresMigrationContext {
  tenant: string;
  /** The tenant's schema; `search_path` points at it. */
  schema: string;
  /** Inside the migration's transaction, unless the migration sets `transaction: false`. */
  client: pg.PoolClient;
  log: Logger;
  signal: AbortSignal;
  /** Batched, checkpointed, throttled UPDATE over a table in key order (needs `transaction: false`). */
  backfill(options: PostgresBackfillOptions): Promise<BackfillOutcome>;
}

export interface MongoMigrationContext {
  tenant: string;
  db: Db;
  log: Logger;
  signal: AbortSignal;
  /** Batched, checkpointed, throttled update over a collection in `_id` order; exactly once per document. */
  backfill(options: MongoBackfillOptions): Promise<BackfillOutcome>;
}

export interface MigrationModule<Ctx> {
  /** PostgreSQL only: false for statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY). */
  transaction?: boolean;
  up(ctx: Ctx): Promise<void>;
  down?(ctx: Ctx): Promise<void>;
}

/** For `.ts` migrations: `export default postgresMigration({ up, down })`, typed. */
export const postgresMigration = (m: MigrationModule<PostgresMigrationContext>) => m;
export const mongoMigration = (m: MigrationModule<MongoMigrationContext>) => m;

export interface Migration<Ctx = unknown> {
  /** Numeric version without leading zeros: `0007_x.sql` is version "7". */
  version: string;
  name: string;
  /** File name, as errors and history name it. */
  file: string;
  /** sha256 of the file's text (line endings normalised). */
  checksum: string;
  transaction: boolean;
  up(ctx: Ctx): Promise<void>;
  down: ((ctx: Ctx) => Promise<void>) | undefined;
}

/** One row of a tenant store's migration history. */
export interface AppliedMigration {
  version: string;
  name: string;
  checksum: string;
  appliedAt: Date;
  durationMs: number;
  jobId: string | null;
  requestedBy: string | null;
  /** Recorded by `baseline`, not run. */
  baseline: boolean;
}

export const compareVersions = (a: string, b: string) => {
  const d = BigInt(a) - BigInt(b);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
};
