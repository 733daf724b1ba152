/**
 * Schedules, as the config module declares them (`schedules: [...]`): which job runs when, for
 * which tenants, with what payload. Checked when the config loads, so that a misspelt key, a bad
 * pattern or a payload the job would refuse fails at deploy time, not at 3 a.m. in a worker.
 */
import { CronExpressionParser } from 'cron-parser';
import { z } from 'zod';
import { catalog, isJobName, type JobName, type PayloadInput } from '../../queues/index.ts';
import { IDENTIFIER, TENANT_ID } from '../../queues/fields.ts';
import { hasAnyPath } from '../jobs/envelope.ts';
import { isIanaZone } from './zone.ts';

/** Input without `tenant`, kept a union where the payload is one (load-fixtures' sources). */
type WithoutTenant<T> = T extends unknown ? Omit<T, 'tenant'> : never;

/** Job types a schedule may run (restore names one backup: run again and again it makes no sense). */
export const SCHEDULABLE_JOBS = ['backup', 'cleanup', 'validate', 'migrate', 'load-fixtures'] as const;
export type SchedulableJob = (typeof SCHEDULABLE_JOBS)[number];

interface ScheduleBase {
  /** An identifier, unique among schedules: it names the schedule's job schedulers. */
  name: string;
  /** Five fields (minute hour day month weekday), or six with seconds first; cron-parser's syntax. */
  cron: string;
  /** The IANA zone the pattern's times are in, e.g. Europe/Paris or UTC. */
  timeZone: string;
  /** Every tenant registered in the control database, or these. */
  tenants: 'all' | string[];
  /**
   * Runs for different tenants start up to this many minutes after the pattern's time, each at its
   * own fixed offset (a hash of schedule and tenant), so that they do not all start at once.
   * Default: 10, or half the shortest interval between runs when that is less; 0 for none.
   */
  spreadMinutes?: number;
}

/** One schedule: the payload is the job's own, `tenant` left out (each tenant's run fills it in). */
export type ScheduleConfig = {
  [J in SchedulableJob]: ScheduleBase & { job: J; payload?: WithoutTenant<PayloadInput<J>> };
}[SchedulableJob];

export const DEFAULT_SPREAD_MINUTES = 10;
const MAX_SPREAD_MINUTES = 24 * 60;

const scheduleShape = z.strictObject({
  name: z.string().regex(IDENTIFIER, 'must be an identifier (letter or _ first, then [A-Za-z0-9_])'),
  job: z.string(),
  cron: z.string().min(1).max(200),
  timeZone: z.string().min(1).max(100),
  tenants: z.union([
    z.literal('all'),
    z
      .array(z.string().regex(TENANT_ID, 'must be a tenant id'))
      .min(1)
      .max(100_000)
      .refine((ids) => new Set(ids).size === ids.length, 'names a tenant twice'),
  ]),
  payload: z.record(z.string(), z.unknown()).optional(),
  spreadMinutes: z.number().min(0).max(MAX_SPREAD_MINUTES).optional(),
});

/** A schedule that passed scheduleProblems. */
export type CheckedSchedule = z.infer<typeof scheduleShape> & { job: SchedulableJob };

/** Stands for "every tenant" when a payload is checked before the tenants are known. */
const ANY_TENANT = 'any_tenant';

/** Why a pattern is refused, or undefined. cron-parser's message names the field, never a payload. */
function cronProblem(pattern: string): string | undefined {
  const fields = pattern.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6)
    return 'must have five fields (minute hour day month weekday), or six with seconds first';
  try {
    CronExpressionParser.parse(pattern, { tz: 'UTC' }).next();
    return undefined;
  } catch (err) {
    return `does not parse: ${(err as Error).message}`;
  }
}

/** The shortest time between two runs of the pattern, in wall-clock time, over its next 64 runs. */
export function shortestIntervalMs(pattern: string): number {
  const runs = CronExpressionParser.parse(pattern, { tz: 'UTC', currentDate: new Date(0) });
  let previous = runs.next().getTime();
  let shortest = Infinity;
  for (let i = 0; i < 64 && runs.hasNext(); i++) {
    const next = runs.next().getTime();
    shortest = Math.min(shortest, next - previous);
    previous = next;
  }
  return shortest;
}

/** The spread window of a checked schedule, in milliseconds (see ScheduleBase.spreadMinutes). */
export function spreadWindowMs(schedule: Pick<ScheduleBase, 'cron' | 'spreadMinutes'>): number {
  if (schedule.spreadMinutes !== undefined) return Math.round(schedule.spreadMinutes * 60_000);
  return Math.min(DEFAULT_SPREAD_MINUTES * 60_000, Math.floor(shortestIntervalMs(schedule.cron) / 2));
}

/** What is wrong with one schedule's job and payload, or nothing. */
function jobProblems(where: string, s: z.infer<typeof scheduleShape>): string[] {
  if (!isJobName(s.job)) return [`${where}.job: must be one of ${SCHEDULABLE_JOBS.join(', ')}`];
  if (!(SCHEDULABLE_JOBS as readonly string[]).includes(s.job))
    return [
      `${where}.job: ${s.job} cannot be scheduled (${
        s.job === 'restore'
          ? 'it restores one named backup'
          : 'its payload names a data subject, who must not stay in Redis'
      }); schedulable: ${SCHEDULABLE_JOBS.join(', ')}`,
    ];
  const payload = s.payload ?? {};
  if (Object.hasOwn(payload, 'tenant'))
    return [`${where}.payload.tenant: is filled in per tenant from tenants; leave it out`];
  // A scheduler keeps its payload in Redis for as long as the schedule exists.
  if (hasAnyPath(payload, catalog[s.job].sensitive))
    return [
      `${where}.payload: ${catalog[s.job].sensitive.join(', ')} may hold personal data, which a schedule would keep in Redis: not allowed`,
    ];
  const tenants = s.tenants === 'all' ? [ANY_TENANT] : s.tenants;
  for (const tenant of tenants) {
    const parsed = catalog[s.job as JobName].payload.safeParse({ ...payload, tenant });
    // zod's messages name the path and the rule, never the value.
    if (!parsed.success)
      return parsed.error.issues.map(
        (i) => `${where}.payload${i.path.map((k) => `.${String(k)}`).join('')}: ${i.message}`,
      );
  }
  return [];
}

/** What is wrong with the schedules as declared: one line each, naming where, never a payload value. */
export function scheduleProblems(schedules: readonly unknown[]): string[] {
  if (!Array.isArray(schedules)) return ['schedules: must be a list'];
  const problems: string[] = [];
  const seen = new Set<string>();
  schedules.forEach((raw, i) => {
    const where = `schedules[${i}]`;
    const parsed = scheduleShape.safeParse(raw);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        problems.push(`${where}${issue.path.map((k) => `.${String(k)}`).join('')}: ${issue.message}`);
      return;
    }
    const s = parsed.data;
    if (seen.has(s.name)) problems.push(`${where}.name: ${s.name} is used twice`);
    seen.add(s.name);
    if (!isIanaZone(s.timeZone))
      problems.push(`${where}.timeZone: must be an IANA time zone such as Europe/Paris or UTC`);
    const cron = cronProblem(s.cron);
    if (cron) problems.push(`${where}.cron: ${cron}`);
    else if (s.spreadMinutes !== undefined) {
      const interval = shortestIntervalMs(s.cron);
      if (s.spreadMinutes * 60_000 >= interval)
        problems.push(
          `${where}.spreadMinutes: must be shorter than the shortest interval between runs (${interval / 60_000} minutes)`,
        );
    }
    problems.push(...jobProblems(where, s));
  });
  return problems;
}
