/**
 * The composition root: every connection the fleet uses is built here, once, and injected into
 * workers, handlers, the board and the CLI. Nothing else opens connections of its own.
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import type { S3Client } from '@aws-sdk/client-s3';
import type { DbfleetConfig } from '../config/define.ts';
import type { Env } from '../config/env.ts';
import { StaticKeyProvider, type KeyProvider } from '../backup/keys.ts';
import { ledgerKeysFrom, type LedgerKeys } from '../erase/ledger-keys.ts';
import { AuditOutbox } from '../control/audit-outbox.ts';
import { ControlDb } from '../control/control-db.ts';
import type { Logger } from '../logger.ts';
import { redactUrl } from '../logger.ts';
import { deleteKeysUnder } from '../redis.ts';
import { LocalObjectStore } from '../storage/local.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { createS3Client, S3ObjectStore } from '../storage/s3.ts';
import { MongoClients } from '../stores/mongo.ts';
import { PostgresPools } from '../stores/postgres.ts';
import { TenantDirectory } from '../tenants.ts';

export interface FleetDeps {
  env: Env;
  config: DbfleetConfig;
  log: Logger;
  prefix: string;
  /**
   * Shared by queues and workers (BullMQ duplicates it only for each worker's blocking connection). The
   * audit outbox writes on it too: that is what orders a job's audit event before its acknowledgement.
   */
  redis: Redis;
  control: ControlDb;
  /** Where jobs append their audit events; a drainer copies them to the control database. */
  audit: AuditOutbox;
  postgres: PostgresPools;
  mongo: MongoClients;
  s3: S3Client;
  /** The default object store: the S3 bucket. */
  objects: ObjectStore;
  /** A local folder, for backups of deployments without S3. */
  localObjects: ObjectStore;
  tenants: TenantDirectory;
  /** Master keys for backups (DBFLEET_BACKUP_KEYS); a KMS implements the same interface. */
  backupKeys: KeyProvider | undefined;
  /** The erasure ledger's keys (DBFLEET_LEDGER_KEYS). */
  ledgerKeys: LedgerKeys | undefined;
}

export function createDeps(env: Env, config: DbfleetConfig, log: Logger): FleetDeps {
  const redis = new Redis(env.DBFLEET_REDIS_URL, { maxRetriesPerRequest: null, lazyConnect: false });
  redis.on('error', (err) =>
    log.warn({ err: { message: redactUrl(err.message) } }, 'redis connection error'),
  );
  const controlPool = new pg.Pool({ connectionString: env.DBFLEET_CONTROL_DATABASE_URL, max: 5 });
  controlPool.on('error', (err) => log.warn({ err }, 'idle control-database client failed'));
  const control = new ControlDb(controlPool, env.DBFLEET_PREFIX);
  const s3 = createS3Client({ endpoint: env.DBFLEET_S3_ENDPOINT, region: env.AWS_REGION });
  return {
    env,
    config,
    log,
    prefix: env.DBFLEET_PREFIX,
    redis,
    control,
    audit: new AuditOutbox(redis, env.DBFLEET_PREFIX, (err, events) =>
      log.error({ err, events }, 'Redis refused audit events; kept in memory and appended again'),
    ),
    postgres: new PostgresPools(log),
    mongo: new MongoClients(),
    s3,
    objects: new S3ObjectStore(s3, env.DBFLEET_S3_BUCKET),
    localObjects: new LocalObjectStore(env.DBFLEET_LOCAL_STORAGE_DIR),
    tenants: new TenantDirectory(env, config, control),
    backupKeys: env.DBFLEET_BACKUP_KEYS ? new StaticKeyProvider(env.DBFLEET_BACKUP_KEYS) : undefined,
    ledgerKeys: ledgerKeysFrom(env.DBFLEET_LEDGER_KEYS),
  };
}

/**
 * Deletes what a finished test or benchmark stored under its prefix: its Redis keys (queues, audit
 * outbox) and its control-database records (audit events, drain cursor, audit dead letters, load
 * rejections).
 */
export async function forgetPrefix(deps: FleetDeps): Promise<void> {
  await deleteKeysUnder(deps.redis, deps.prefix);
  await deps.control.forgetPrefix(deps.prefix);
}

export async function closeDeps(deps: FleetDeps): Promise<void> {
  await deps.audit.close();
  const refused = deps.audit.refusedEvents;
  if (refused > 0) deps.log.error({ events: refused }, 'closing with audit events Redis refused');
  await Promise.allSettled([deps.postgres.closeAll(), deps.mongo.closeAll(), deps.control.pool.end()]);
  deps.s3.destroy();
  await deps.redis.quit().catch(() => deps.redis.disconnect());
}
