/**
 * When a schedule's runs fall: the repeat strategy given to BullMQ (`settings.repeatStrategy`) on
 * both the Queue that upserts our job schedulers and every Worker, since BullMQ computes the next
 * run in both places: at upsert (JobScheduler.upsertJobScheduler) and when a worker takes a run
 * (Worker.nextJobFromJobData, which upserts the following one). One function, so the instants
 * `schedules list` and the tests compute are the ones BullMQ uses.
 *
 * Why not BullMQ's default (cron-parser 5.10 in the zone): computed during the repeated hour when
 * clocks go back, it takes that hour's second 02:30 for a new run, so a daily run taken late, or a
 * scheduler upserted then, runs twice that night. Here the pattern is walked in wall-clock time
 * (cron-parser in UTC, where no hour repeats or goes missing) and each wall time it matches is
 * turned into instants by these rules:
 *
 * - A pattern with fixed hours (`30 2 * * *`, or every sixth hour) runs once per wall time it
 *   names: in the repeated hour at the first occurrence only; a time the clocks skip runs shifted
 *   by the gap (02:30 runs at 03:30 summer time), as cron-parser, RFC 5545 and Temporal resolve it.
 * - A pattern whose hour is `*` (every hour or more often) follows elapsed time, as cron does for
 *   such jobs: the repeated hour gets its runs twice (both 02:00 and both 02:30 for a pattern every
 *   30 minutes), the skipped hour none (there is no 02:30 to run at).
 *
 * The spread (a schedule's per-tenant offset, definitions.ts) shifts every run by a fixed duration:
 * a run is at (an instant of the pattern) + spread. It travels in the repeat options under
 * SPREAD_KEY, which BullMQ copies from each run's options to the next.
 */
import { CronExpressionParser } from 'cron-parser';
import { defaultRepeatStrategy, type RepeatOptions, type RepeatStrategy } from 'bullmq';
import { instantsOf, offsetChangeNear, wallAt } from './zone.ts';

/** The repeat-options key holding a scheduler's spread, in milliseconds; marks it as ours too. */
export const SPREAD_KEY = 'dbfleetSpreadMs';

export interface ScheduleRepeat extends RepeatOptions {
  pattern: string;
  tz: string;
  [SPREAD_KEY]: number;
}

export interface Timing {
  pattern: string;
  tz: string;
  spreadMs: number;
}

/** Whether the pattern's hour field is `*` (every hour), which makes its runs follow elapsed time. */
export function everyHour(pattern: string): boolean {
  return CronExpressionParser.parse(pattern, { tz: 'UTC' }).fields.hour.values.length === 24;
}

/** The instants a wall time that matched the pattern runs at (see the rules above). */
function runsAt(zone: string, wall: number, elapsed: boolean): number[] {
  const { occurrences, shifted } = instantsOf(zone, wall);
  if (elapsed) return occurrences;
  return occurrences.length > 0 ? [occurrences[0]!] : [shifted!];
}

/**
 * The first instant of the pattern (no spread) strictly after `after`. Wall times are walked from
 * the wall time at `after`; near a change of offset, from further back and a little past the
 * first match too, since there the order of wall times and of instants can differ (a skipped
 * 02:30 runs after 03:00).
 */
export function nextInstant(pattern: string, zone: string, after: number): number {
  const elapsed = everyHour(pattern);
  const margin = offsetChangeNear(zone, after);
  const walls = CronExpressionParser.parse(pattern, {
    tz: 'UTC',
    currentDate: new Date(wallAt(zone, after) - margin),
  });
  let best: number | undefined;
  let stopAfterWall = Infinity;
  for (;;) {
    const wall = walls.next().getTime();
    if (wall > stopAfterWall) return best!;
    for (const t of runsAt(zone, wall, elapsed)) if (t > after && (best === undefined || t < best)) best = t;
    if (best !== undefined && stopAfterWall === Infinity) {
      const around = Math.max(margin, offsetChangeNear(zone, best));
      if (around === 0) return best;
      stopAfterWall = wallAt(zone, best) + around;
    }
  }
}

/** The first run strictly after `after`: the pattern's instants, each moved later by the spread. */
export function nextRun(timing: Timing, after: number): number {
  return nextInstant(timing.pattern, timing.tz, after - timing.spreadMs) + timing.spreadMs;
}

/** The next `count` runs after `after`, each computed from the one before, as BullMQ chains them. */
export function runsAfter(timing: Timing, after: number, count: number): number[] {
  const runs: number[] = [];
  for (let at = after; runs.length < count;) runs.push((at = nextRun(timing, at)));
  return runs;
}

/** The runs in [from, to), chained as BullMQ chains them from a run to the next. */
export function runsBetween(timing: Timing, from: number, to: number): number[] {
  const runs: number[] = [];
  for (let at = nextRun(timing, from - 1); at < to; at = nextRun(timing, at)) runs.push(at);
  return runs;
}

/**
 * BullMQ's repeat strategy: ours for repeat options carrying SPREAD_KEY (our schedulers), BullMQ's
 * default for any other scheduler on the same queue, which keeps the behaviour its owner chose.
 * `millis` is the later of now and the run just taken, so runs missed while no worker was up are
 * not made up one by one: the next is the first after now.
 */
export const repeatStrategy: RepeatStrategy = (millis, opts) => {
  const spread = (opts as Partial<ScheduleRepeat>)[SPREAD_KEY];
  if (typeof spread !== 'number' || !opts.pattern) return defaultRepeatStrategy(millis, opts);
  return nextRun({ pattern: opts.pattern, tz: opts.tz ?? 'UTC', spreadMs: spread }, millis);
};
