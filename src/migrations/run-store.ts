/**
 * The one migration algorithm, for any store: read history under the store's lock, refuse drift,
 * plan, then apply or revert one migration at a time, each recorded as it completes. The stores differ
 * only in the `MigrationTarget` they hand in (postgres-target.ts, mongo-target.ts).
 */
import { classifyError, InterruptedError, PermanentError, TransientError } from '../errors.ts';
import { currentVersion, driftError, findDrift, planDown, planUp, type Drift } from './plan.ts';
import { compareVersions, type AppliedMigration, type Migration, type MigrationStore } from './types.ts';

export type MigrateAction = 'apply' | 'status' | 'repair' | 'baseline';

export interface MigrateRequest {
  action: MigrateAction;
  direction: 'up' | 'down';
  to?: string | undefined;
  dryRun: boolean;
  jobId: string | null;
  requestedBy: string | null;
  /** The job's abort signal (shutdown, timeout): migrations and backfills stop at their next checkpoint. */
  signal?: AbortSignal | undefined;
}

export interface RunMeta {
  jobId: string | null;
  requestedBy: string | null;
}

export interface MigrationTarget<Ctx> {
  readonly store: MigrationStore;
  /**
   * Holds this tenant store's migration lock while `fn` runs; `fn`'s signal fires when `signal` does
   * or the lock is lost.
   */
  withLock<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T>;
  history(): Promise<AppliedMigration[]>;
  /** Runs `up` and records it (in one transaction where the store and migration allow). */
  apply(m: Migration<Ctx>, meta: RunMeta, signal: AbortSignal): Promise<void>;
  /** Runs `down` and removes its record. */
  revert(m: Migration<Ctx>, signal: AbortSignal): Promise<void>;
  setChecksum(version: string, checksum: string): Promise<void>;
  forget(version: string): Promise<void>;
  recordBaseline(ms: readonly Migration<Ctx>[], meta: RunMeta): Promise<void>;
}

export interface StoreOutcome {
  store: MigrationStore;
  action: MigrateAction;
  direction: 'up' | 'down';
  dryRun: boolean;
  /** Highest applied version after the run (before it, for status and dry runs). */
  current: string | null;
  /** Files run up, or (dry run) that would be. */
  applied: string[];
  /** Files run down, or (dry run) that would be. */
  reverted: string[];
  /** Files not applied after the run. */
  pending: string[];
  drifted: Drift[];
  /** repair: files whose checksum was re-recorded or whose missing record was dropped. */
  repaired: string[];
}

/** A migration's failure, named after its file; keeps the driver error's kind (retry or not). */
function migrationError(file: string, err: unknown): Error {
  const c = classifyError(err);
  // A migration throwing its own error is code, not weather: retrying will not help.
  if (c.kind === 'transient' && c.code !== 'unknown' && c.code !== 'mongo_error')
    return new TransientError(c.code, `${file}: ${c.message}`, { cause: err });
  return new PermanentError(c.code === 'unknown' ? 'migration_failed' : c.code, `${file}: ${c.message}`, {
    cause: err,
  });
}

export async function runStore<Ctx>(
  target: MigrationTarget<Ctx>,
  available: readonly Migration<Ctx>[],
  req: MigrateRequest,
): Promise<StoreOutcome> {
  const outcome: StoreOutcome = {
    store: target.store,
    action: req.action,
    direction: req.direction,
    dryRun: req.dryRun,
    current: null,
    applied: [],
    reverted: [],
    pending: [],
    drifted: [],
    repaired: [],
  };
  const finish = (applied: readonly AppliedMigration[]) => {
    const done = new Set(applied.map((a) => a.version));
    outcome.current = currentVersion(applied);
    outcome.pending = available.filter((m) => !done.has(m.version)).map((m) => m.file);
    return outcome;
  };
  const meta: RunMeta = { jobId: req.jobId, requestedBy: req.requestedBy };

  if (req.action === 'status' || req.dryRun) {
    // Read-only: no lock. A dry run plans what the real run would, drift refusal included.
    const applied = await target.history();
    outcome.drifted = findDrift(available, applied);
    if (req.action !== 'apply') return finish(applied);
    if (outcome.drifted.length) throw driftError(target.store, outcome.drifted);
    if (req.direction === 'up') outcome.applied = planUp(available, applied, req.to).map((m) => m.file);
    else outcome.reverted = planDown(available, applied, req.to!).map((m) => m.file);
    return finish(applied);
  }

  return target.withLock(async (signal) => {
    // Read under the lock: a runner that waited for it sees what the previous holder applied.
    let applied = await target.history();
    const drift = findDrift(available, applied);
    if (req.action === 'repair') {
      const byVersion = new Map(available.map((m) => [m.version, m]));
      for (const d of drift) {
        if (d.reason === 'edited') await target.setChecksum(d.version, byVersion.get(d.version)!.checksum);
        else await target.forget(d.version);
        outcome.repaired.push(d.file);
      }
      return finish(await target.history());
    }
    if (drift.length) {
      outcome.drifted = drift;
      throw driftError(target.store, drift);
    }
    if (req.action === 'baseline') {
      if (applied.length)
        throw new PermanentError(
          'baseline_refused',
          `${target.store}: history is not empty; baseline adopts only a new store`,
        );
      const adopted = available.filter((m) => compareVersions(m.version, req.to!) <= 0);
      await target.recordBaseline(adopted, meta);
      outcome.applied = adopted.map((m) => m.file);
      return finish(await target.history());
    }
    const steps =
      req.direction === 'up' ? planUp(available, applied, req.to) : planDown(available, applied, req.to!);
    for (const m of steps) {
      if (signal.aborted)
        throw signal.reason instanceof TransientError
          ? signal.reason
          : new InterruptedError('stopped between migrations');
      try {
        if (req.direction === 'up') await target.apply(m, meta, signal);
        else await target.revert(m, signal);
      } catch (err) {
        throw migrationError(m.file, err);
      }
      (req.direction === 'up' ? outcome.applied : outcome.reverted).push(m.file);
    }
    applied = await target.history();
    return finish(applied);
  }, req.signal);
}
