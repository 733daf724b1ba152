/**
 * The sync a worker process runs when it starts, in the background (jobs are taken meanwhile).
 * Without the lease it skips: another process is syncing. But that process may be killed before it
 * finishes, so the skipped worker waits for the lease to go and checks that a complete sync of the
 * same wanted state was recorded since it started; if not, it tries again, a few times.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import {
  checkedSchedules,
  LEASE_MS,
  lastSync,
  leaseKey,
  syncSchedules,
  wantedDigest,
  wantedNow,
} from './sync.ts';

const ATTEMPTS = 5;

/** Resolves when done or given up (errors are logged, never thrown: a worker runs on regardless). */
export async function syncSchedulesAtStart(deps: FleetDeps, log: Logger, signal: AbortSignal): Promise<void> {
  const startedAt = Date.now();
  try {
    const schedules = checkedSchedules(deps.config);
    for (let attempt = 1; attempt <= ATTEMPTS && !signal.aborted; attempt++) {
      const outcome = await syncSchedules(deps, { schedules });
      if (outcome.status === 'synced') {
        const r = outcome.report;
        log.info(
          {
            added: r.added.length,
            changed: r.changed.length,
            removed: r.removed.length,
            unchanged: r.unchanged,
            skipped: r.skipped.length,
            failed: r.failed.length,
          },
          'schedules synced',
        );
        for (const f of r.failed) log.error({ ...f }, 'schedule sync: a scheduler could not be written');
        return;
      }
      log.info({ heldForMs: outcome.heldForMs }, 'schedules sync skipped: another process holds the lease');
      // Wait for the holder to finish or its lease to lapse, then see whether it completed.
      const until = Date.now() + LEASE_MS + 1_000;
      while (Date.now() < until && (await deps.redis.exists(leaseKey(deps.prefix))))
        await sleep(100 + Math.random() * 100, undefined, { signal });
      const done = await lastSync(deps);
      if (
        done &&
        done.at >= startedAt &&
        done.digest === wantedDigest((await wantedNow(deps, schedules)).wanted)
      ) {
        log.info('schedules in sync (synced by another process)');
        return;
      }
    }
    if (!signal.aborted)
      log.warn('schedules not synced at start: the lease stayed busy; run dbfleet schedules sync');
  } catch (err) {
    if (signal.aborted) return;
    log.error({ err }, 'schedules sync at start failed; run dbfleet schedules sync');
  }
}
