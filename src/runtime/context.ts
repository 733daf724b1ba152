/** What a handler receives besides its payload. Built per attempt by the runtime; see process-job.ts. */
import type { Db } from 'mongodb';
import type { DbfleetConfig } from '../config/define.ts';
import type { ControlDb } from '../control/control-db.ts';
import type { Logger } from '../logger.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { TenantPostgres } from '../stores/postgres.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { S3Client } from '@aws-sdk/client-s3';

export interface JobContext {
  job: { id: string; queue: string; attempt: number; prefix: string };
  tenant: string;
  /** pino child logger tagged with queue, job, tenant and attempt. */
  log: Logger;
  /** Fires on worker shutdown or job timeout: stop at the next checkpoint and throw. */
  signal: AbortSignal;
  /** The tenant's PostgreSQL schema: borrow and release clients, nothing wider. */
  postgres: TenantPostgres;
  /** The tenant's MongoDB database. */
  mongo: Db;
  objects: ObjectStore;
  localObjects: ObjectStore;
  s3: S3Client;
  config: DbfleetConfig;
  /** Folders file sources may be read from. */
  fileRoots: readonly string[];
  control: ControlDb;
  progress(value: number | object): Promise<void>;
  checkpoint: Checkpoint;
  /** Throws an InterruptedError if the signal has fired; call between batches. */
  throwIfInterrupted(): void;
}
