/**
 * What the config's schedules ask for, scheduler by scheduler: one BullMQ job scheduler per
 * (schedule, tenant), in the queue of the schedule's job, with a stable id and a digest of
 * everything that defines it.
 */
import { createHash } from 'node:crypto';
import type { JobSchedulerTemplateOptions } from 'bullmq';
import { jobOptions } from '../client/client.ts';
import { buildJob, canonicalJson, type JobEnvelope } from '../jobs/envelope.ts';
import type { CheckedSchedule, SchedulableJob } from './config.ts';
import { spreadWindowMs } from './config.ts';
import { SPREAD_KEY, type ScheduleRepeat, type Timing } from './strategy.ts';

/**
 * Our schedulers' ids start with this: a sync removes schedulers of its own that the config no
 * longer asks for, and never touches another scheduler on the same queues. Two colons in all:
 * BullMQ takes ids with four or more, shaped so, for legacy repeatable-job keys.
 */
export const SCHEDULER_ID_PREFIX = 'dbfleet:';
const OURS = /^dbfleet:([A-Za-z_][A-Za-z0-9_]{0,62}):([a-z][a-z0-9_]{0,39})$/;

/**
 * Bumped when the meaning of a definition changes (how runs are timed): every scheduler then counts
 * as changed at the next sync and is upserted once.
 */
const DEFINITION_VERSION = 1;

export function schedulerId(schedule: string, tenant: string): string {
  return `${SCHEDULER_ID_PREFIX}${schedule}:${tenant}`;
}

/** The schedule and tenant of one of our scheduler ids; undefined for anyone else's. */
export function parseSchedulerId(id: string): { schedule: string; tenant: string } | undefined {
  const m = OURS.exec(id);
  return m ? { schedule: m[1]!, tenant: m[2]! } : undefined;
}

/**
 * A tenant's fixed offset within the schedule's spread window: a hash of schedule and tenant, so
 * the same on every host and every sync, and different tenants' runs fall at different moments.
 * Whole seconds when the window is a minute or more, for readable run times.
 */
export function spreadOffsetMs(schedule: string, tenant: string, windowMs: number): number {
  if (windowMs <= 0) return 0;
  const h = createHash('sha256').update(`${schedule}\n${tenant}`).digest();
  const offset = Math.floor((h.readUIntBE(0, 6) / 2 ** 48) * windowMs);
  return windowMs >= 60_000 ? Math.floor(offset / 1000) * 1000 : offset;
}

export interface SchedulerDefinition {
  id: string;
  queue: SchedulableJob;
  schedule: string;
  tenant: string;
  timing: Timing;
  repeat: ScheduleRepeat;
  template: { name: string; data: JobEnvelope; opts: JobSchedulerTemplateOptions };
  /** sha256 of the whole definition; also in template.data.scheduled.definition. */
  definition: string;
}

/** The scheduler for one tenant of a checked schedule. */
export function defineScheduler(s: CheckedSchedule, tenant: string): SchedulerDefinition {
  const timing: Timing = {
    pattern: s.cron,
    tz: s.timeZone,
    spreadMs: spreadOffsetMs(s.name, tenant, spreadWindowMs(s)),
  };
  const repeat: ScheduleRepeat = { pattern: timing.pattern, tz: timing.tz, [SPREAD_KEY]: timing.spreadMs };
  // Validated and digested as any enqueued job is; the run id each run gets from its job id.
  const { name, data } = buildJob(s.job, { ...s.payload, tenant }, `schedule ${s.name}`);
  const { runId: _unique, ...shared } = data;
  const opts = jobOptions(s.job);
  const definition = createHash('sha256')
    .update(canonicalJson({ v: DEFINITION_VERSION, queue: s.job, repeat, name, data: shared, opts }))
    .digest('hex');
  return {
    id: schedulerId(s.name, tenant),
    queue: s.job,
    schedule: s.name,
    tenant,
    timing,
    repeat,
    template: { name, data: { ...shared, scheduled: { schedule: s.name, definition } }, opts },
    definition,
  };
}

export interface Skipped {
  schedule: string;
  tenant: string;
  reason: string;
}

/**
 * Every scheduler the schedules ask for, given the tenants registered (and active) now. A tenant
 * named in a schedule but not registered gets none (its runs would be refused); the next sync after
 * `dbfleet tenants add` creates it.
 */
export function desiredSchedulers(
  schedules: readonly CheckedSchedule[],
  registered: readonly string[],
): { wanted: SchedulerDefinition[]; skipped: Skipped[] } {
  const known = new Set(registered);
  const wanted: SchedulerDefinition[] = [];
  const skipped: Skipped[] = [];
  for (const s of schedules) {
    for (const tenant of s.tenants === 'all' ? registered : s.tenants) {
      if (known.has(tenant)) wanted.push(defineScheduler(s, tenant));
      else skipped.push({ schedule: s.name, tenant, reason: 'not a registered tenant' });
    }
  }
  return { wanted, skipped };
}
