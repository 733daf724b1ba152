/**
 * Migrations in a tenant's MongoDB database. FerretDB has no multi-document transactions and MongoDB
 * has them only on a replica set (and not for creating collections or indexes everywhere), so a
 * migration and its history record cannot commit together: a run that dies between the two runs the
 * migration again next time. MongoDB migrations must therefore be idempotent (README shows how). The
 * lock is a lease (lease-lock.ts).
 */
import type { Db } from 'mongodb';
import type { Logger } from '../logger.ts';
import { mongoBackfill } from './backfill.ts';
import { withMongoTenantLock } from './tenant-locks.ts';
import type { MigrationTarget, RunMeta } from './run-store.ts';
import {
  compareVersions,
  type AppliedMigration,
  type Migration,
  type MongoMigrationContext,
} from './types.ts';

/** A history record: an applied migration, keyed by its version. */
type HistoryDoc = Omit<AppliedMigration, 'version'> & { _id: string };

export interface MongoTargetOptions {
  tenant: string;
  db: Db;
  log: Logger;
  leaseMs: number;
  lockWaitMs: number;
  holder: string;
}

export function mongoTarget(o: MongoTargetOptions): MigrationTarget<MongoMigrationContext> {
  const history = o.db.collection<HistoryDoc>('_dbfleet_migrations');
  const backfills = o.db.collection<{ _id: string }>('_dbfleet_backfills');
  const doc = (
    m: Migration<MongoMigrationContext>,
    meta: RunMeta,
    ms: number,
    baseline = false,
  ): HistoryDoc => ({
    _id: m.version,
    name: m.name,
    checksum: m.checksum,
    appliedAt: new Date(),
    durationMs: Math.round(ms),
    jobId: meta.jobId,
    requestedBy: meta.requestedBy,
    baseline,
  });
  const insert = async (d: HistoryDoc) => {
    await history.insertOne(d).catch((err: { code?: number }) => {
      if (err.code !== 11000) throw err; // already recorded: nothing to do
    });
  };
  const clearBackfills = (version: string) => backfills.deleteMany({ _id: { $regex: `^${version}/` } });

  return {
    store: 'mongo',
    withLock(fn, signal) {
      return withMongoTenantLock(
        o.db,
        { leaseMs: o.leaseMs, waitMs: o.lockWaitMs, holder: o.holder },
        fn,
        signal,
      );
    },
    async history() {
      const docs = await history.find({}).toArray();
      return docs
        .map(({ _id, ...rest }): AppliedMigration => ({ version: _id, ...rest }))
        .sort((a, b) => compareVersions(a.version, b.version));
    },
    async apply(m, meta, signal) {
      const started = performance.now();
      const backfill = mongoBackfill(o.db, { prefix: `${m.version}/`, signal, log: o.log });
      await m.up({ tenant: o.tenant, db: o.db, log: o.log, signal, backfill });
      await insert(doc(m, meta, performance.now() - started));
      await clearBackfills(m.version);
    },
    async revert(m, signal) {
      await clearBackfills(m.version);
      const backfill = mongoBackfill(o.db, { prefix: `${m.version}/`, signal, log: o.log });
      await m.down!({ tenant: o.tenant, db: o.db, log: o.log, signal, backfill });
      await history.deleteOne({ _id: m.version });
    },
    async setChecksum(version, checksum) {
      await history.updateOne({ _id: version }, { $set: { checksum } });
    },
    async forget(version) {
      await history.deleteOne({ _id: version });
    },
    async recordBaseline(ms, meta) {
      for (const m of ms) await insert(doc(m, meta, 0, true));
    },
  };
}
