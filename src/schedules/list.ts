/** `dbfleet schedules list`: each scheduler as Redis holds it, next to what the config asks for. */
import type { FleetDeps } from '../runtime/deps.ts';
import type { CheckedSchedule } from './config.ts';
import { closeQueues, plan, readSchedulers, scheduleQueues } from './plan.ts';
import { checkedSchedules, wantedNow } from './sync.ts';
import { localIso } from './zone.ts';

export type ScheduleStatus =
  | 'in sync'
  | 'differs from config'
  | 'no pending run'
  | 'not in config'
  | 'not created yet'
  | 'tenant not registered';

export interface ScheduleRow {
  schedule: string;
  job: string;
  tenant: string;
  cron: string | null;
  timeZone: string | null;
  /** This tenant's offset within the spread window, in seconds (null when not in the config). */
  spreadSeconds: number | null;
  /** The next run, ISO 8601 in UTC and in the schedule's zone; null when there is no scheduler. */
  next: string | null;
  nextLocal: string | null;
  /** Anything but "in sync" is put right by `dbfleet schedules sync` (a tenant by `tenants add`). */
  status: ScheduleStatus;
}

const STATUS = {
  unchanged: 'in sync',
  change: 'differs from config',
  repair: 'no pending run',
  remove: 'not in config',
  add: 'not created yet',
} as const;

export async function listSchedules(
  deps: FleetDeps,
  schedules: readonly CheckedSchedule[] = checkedSchedules(deps.config),
): Promise<ScheduleRow[]> {
  const queues = scheduleQueues(deps);
  try {
    const { wanted, skipped } = await wantedNow(deps, schedules);
    const rows: ScheduleRow[] = plan(wanted, await readSchedulers(deps, queues)).map((p) => {
      const cron = p.wanted?.repeat.pattern ?? p.existing?.pattern ?? null;
      const timeZone = p.wanted?.repeat.tz ?? p.existing?.tz ?? 'UTC';
      const next = p.existing?.next;
      return {
        schedule: p.schedule,
        job: p.queue,
        tenant: p.tenant,
        cron,
        timeZone,
        spreadSeconds: p.wanted ? p.wanted.timing.spreadMs / 1000 : null,
        next: next === undefined ? null : new Date(next).toISOString(),
        nextLocal: next === undefined ? null : localIso(timeZone, next),
        status: STATUS[p.action],
      };
    });
    for (const s of skipped) {
      const schedule = schedules.find((c) => c.name === s.schedule)!;
      rows.push({
        schedule: s.schedule,
        job: schedule.job,
        tenant: s.tenant,
        cron: schedule.cron,
        timeZone: schedule.timeZone,
        spreadSeconds: null,
        next: null,
        nextLocal: null,
        status: 'tenant not registered',
      });
    }
    return rows.sort((a, b) => a.schedule.localeCompare(b.schedule) || a.tenant.localeCompare(b.tenant));
  } finally {
    await closeQueues(queues);
  }
}
