/**
 * Reconciling the config's schedules into BullMQ job schedulers: by whichever process holds the
 * schedules lease, at worker start, `dbfleet schedules sync` and `dbfleet tenants add|remove`.
 *
 * What makes it safe to run from many processes at once, or from one restarting in a loop:
 * - one process at a time (the lease), and the plan is read after the lease is taken;
 * - a scheduler that already matches is not written at all (its digest is in its template), so
 *   repeated syncs neither move its next run nor touch the run it is waiting for;
 * - a changed scheduler is upserted in place (BullMQ replaces its pending run in one script), never
 *   removed then added again: that pair, in the same slot, is a known way to end with no run;
 * - only schedulers with our id prefix are ever removed.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import type { DbfleetConfig } from '../config/define.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { scheduleProblems, type CheckedSchedule } from './config.ts';
import { desiredSchedulers, type SchedulerDefinition, type Skipped } from './definitions.ts';
import { RedisLease } from './lease.ts';
import { closeQueues, plan, readSchedulers, scheduleQueues, type Planned } from './plan.ts';

/** Long enough for thousands of upserts between renewals; short enough that a killed holder's lapses soon. */
export const LEASE_MS = 10_000;

export const leaseKey = (prefix: string) => `${prefix}:dbfleet:schedules:lease`;
const markerKey = (prefix: string) => `${prefix}:dbfleet:schedules:synced`;

/** The config's schedules, checked again: a config module may export a plain object. */
export function checkedSchedules(config: DbfleetConfig): CheckedSchedule[] {
  const schedules = config.schedules ?? [];
  const problems = scheduleProblems(schedules);
  if (problems.length > 0) throw new Error(`invalid schedules:\n  ${problems.join('\n  ')}`);
  return schedules as CheckedSchedule[];
}

/** What the schedules ask for now, given the tenants registered now. */
export async function wantedNow(
  deps: FleetDeps,
  schedules: readonly CheckedSchedule[],
): Promise<{ wanted: SchedulerDefinition[]; skipped: Skipped[] }> {
  const tenants = schedules.length === 0 ? [] : await deps.control.listTenants();
  return desiredSchedulers(
    schedules,
    tenants.filter((t) => t.status === 'active').map((t) => t.id),
  );
}

/** A digest of the whole wanted state: what a completed sync records, and a skipped worker checks. */
export function wantedDigest(wanted: readonly SchedulerDefinition[]): string {
  const lines = wanted.map((w) => `${w.queue} ${w.id} ${w.definition}`).sort();
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}

export interface SyncItem {
  schedule: string;
  job: string;
  tenant: string;
  /** Its next run (ISO 8601, UTC) once written. */
  next?: string;
  /** For a change: whether the definition differed or the scheduler had lost its pending run. */
  why?: 'definition' | 'no pending run';
  error?: string;
}

export interface SyncReport {
  added: SyncItem[];
  changed: SyncItem[];
  removed: SyncItem[];
  unchanged: number;
  /** Tenants named by a schedule that are not registered: no scheduler for them (yet). */
  skipped: Skipped[];
  /** Schedulers whose write failed; the next sync tries again. */
  failed: SyncItem[];
}

export type SyncOutcome =
  | { status: 'synced'; report: SyncReport }
  /** Another process holds the lease, for this much longer. */
  | { status: 'busy'; heldForMs: number };

export interface SyncOptions {
  /** The schedules to reconcile; the config module's by default. */
  schedules?: readonly CheckedSchedule[];
  /** How long to wait for a busy lease; 0 to give up at once. */
  waitMs?: number;
}

export async function syncSchedules(deps: FleetDeps, options: SyncOptions = {}): Promise<SyncOutcome> {
  const lease = new RedisLease(deps.redis, leaseKey(deps.prefix), LEASE_MS);
  const deadline = Date.now() + (options.waitMs ?? 0);
  while (!(await lease.tryAcquire())) {
    const heldForMs = await lease.remainingMs();
    if (Date.now() >= deadline) return { status: 'busy', heldForMs };
    await sleep(Math.min(250, Math.max(10, deadline - Date.now())));
  }
  const queues = scheduleQueues(deps);
  try {
    // Read only once the lease is ours: a plan read before could be another process's past.
    const schedules = options.schedules ?? checkedSchedules(deps.config);
    const { wanted, skipped } = await wantedNow(deps, schedules);
    const steps = plan(wanted, await readSchedulers(deps, queues));
    const report: SyncReport = { added: [], changed: [], removed: [], unchanged: 0, skipped, failed: [] };
    for (const step of steps) {
      if (step.action === 'unchanged') {
        report.unchanged++;
        continue;
      }
      if (!(await lease.renewIfDue())) throw new Error('the schedules lease lapsed during the sync');
      const item = itemOf(step);
      try {
        await apply(queues.get(step.queue)!, step, item);
        (step.action === 'add'
          ? report.added
          : step.action === 'remove'
            ? report.removed
            : report.changed
        ).push(item);
      } catch (err) {
        report.failed.push({ ...item, error: (err as Error).message });
      }
    }
    if (report.failed.length === 0)
      await deps.redis.set(
        markerKey(deps.prefix),
        JSON.stringify({ digest: wantedDigest(wanted), at: Date.now() }),
      );
    return { status: 'synced', report };
  } finally {
    await closeQueues(queues);
    await lease.release().catch(() => undefined);
  }
}

function itemOf(step: Planned): SyncItem {
  return {
    schedule: step.schedule,
    job: step.queue,
    tenant: step.tenant,
    ...(step.action === 'change' ? { why: 'definition' as const } : {}),
    ...(step.action === 'repair' ? { why: 'no pending run' as const } : {}),
  };
}

async function apply(queue: Queue, step: Planned, item: SyncItem): Promise<void> {
  if (step.action === 'remove') {
    await queue.removeJobScheduler(step.id);
    return;
  }
  const w = step.wanted!;
  const job = await queue.upsertJobScheduler(w.id, w.repeat, w.template);
  const next = Number(job?.id?.slice(`repeat:${w.id}:`.length));
  if (Number.isFinite(next)) item.next = new Date(next).toISOString();
}

/** What the last complete sync recorded: the wanted state's digest, and when. */
export async function lastSync(deps: FleetDeps): Promise<{ digest: string; at: number } | undefined> {
  const text = await deps.redis.get(markerKey(deps.prefix));
  if (!text) return undefined;
  try {
    const { digest, at } = JSON.parse(text) as { digest?: unknown; at?: unknown };
    return typeof digest === 'string' && typeof at === 'number' ? { digest, at } : undefined;
  } catch {
    return undefined;
  }
}
