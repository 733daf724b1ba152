/** What a handler receives besides its payload. Built per attempt by the runtime; see process-job.ts. */
import type { Db } from 'mongodb';
import type { DbfleetConfig } from '../config/define.ts';
import type { ControlDb } from '../control/control-db.ts';
import type { Logger } from '../logger.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { TenantPostgres } from '../stores/postgres.ts';
import type { Checkpoint } from './checkpoint.ts';
import type { S3Client } from '@aws-sdk/client-s3';
import type { FanOut } from './fan-out.ts';
import type { FleetDeps } from './deps.ts';
import type { TenantScope } from '../storage/tenant-scope.ts';

export interface JobContext {
  /**
   * `id` is BullMQ's, for logs and links only: it repeats over time. Key anything durable (checkpoints,
   * derived ids, records) by `runId`, unique for all time.
   */
  job: {
    id: string;
    runId: string;
    queue: string;
    attempt: number;
    prefix: string;
    /** An earlier delivery of this job started (killed, handed back, retried): it may have written part of the work. */
    redelivered: boolean;
  };
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
  /** The folders and S3 prefixes this tenant's sources may be read from, and nothing else. */
  sources: TenantScope;
  control: ControlDb;
  progress(value: number | object): Promise<void>;
  checkpoint: Checkpoint;
  /** Runs child jobs and returns their outcomes (fan-out.ts). One fan-out per job. */
  fanOut: FanOut;
  /** The whole composition root, for jobs that orchestrate stores themselves (migrate). */
  deps: FleetDeps;
  /** Who asked for the job, as recorded in the audit log. */
  requestedBy: string | undefined;
  /** Throws an InterruptedError if the signal has fired; call between batches. */
  throwIfInterrupted(): void;
}
