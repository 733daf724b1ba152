/**
 * When scheduled runs fall, as computed by the repeat strategy BullMQ is given (the same function
 * its Queue and Worker call: src/schedules/strategy.ts), across the daylight-saving changes of
 * Europe/Paris in 2026: spring forward on 29 March (02:00 CET becomes 03:00 CEST), fall back on
 * 25 October (03:00 CEST becomes 02:00 CET).
 */
import { defaultRepeatStrategy } from 'bullmq';
import { describe, expect, it } from 'vitest';
import {
  nextRun,
  repeatStrategy,
  runsBetween,
  SPREAD_KEY,
  type Timing,
} from '../../src/schedules/strategy.ts';
import { instantsOf, localIso } from '../../src/schedules/zone.ts';

const PARIS = 'Europe/Paris';
const at = (iso: string) => Date.parse(iso);
const local = (zone: string, runs: number[]) => runs.map((r) => localIso(zone, r));
const timing = (pattern: string, spreadMs = 0, tz = PARIS): Timing => ({ pattern, tz, spreadMs });

/** Local days 27–31 March and 23–27 October 2026, midnight to midnight. */
const SPRING = [at('2026-03-27T00:00:00+01:00'), at('2026-04-01T00:00:00+02:00')] as const;
const FALL = [at('2026-10-23T00:00:00+02:00'), at('2026-10-28T00:00:00+01:00')] as const;

/** For every start in the window (every 16 minutes and 53 seconds), the next run is the chain's next. */
function expectNextFromAnywhere(t: Timing, [from, to]: readonly [number, number]) {
  const chain = runsBetween(t, from, to + 3 * 86_400_000);
  for (let after = from; after < to; after += 1_013_000)
    expect(nextRun(t, after), new Date(after).toISOString()).toBe(chain.find((r) => r > after));
}

describe('a daily run at 02:30 in Europe/Paris', () => {
  const daily = timing('30 2 * * *');

  it('runs once on each day around spring forward; on the day itself at 03:30, 02:30 not existing', () => {
    expect(local(PARIS, runsBetween(daily, ...SPRING))).toEqual([
      '2026-03-27T02:30:00+01:00',
      '2026-03-28T02:30:00+01:00',
      '2026-03-29T03:30:00+02:00',
      '2026-03-30T02:30:00+02:00',
      '2026-03-31T02:30:00+02:00',
    ]);
  });

  it('runs once on each day around fall back: at the first 02:30 of the day, not again at the second', () => {
    const runs = runsBetween(daily, ...FALL);
    expect(local(PARIS, runs)).toEqual([
      '2026-10-23T02:30:00+02:00',
      '2026-10-24T02:30:00+02:00',
      '2026-10-25T02:30:00+02:00',
      '2026-10-26T02:30:00+01:00',
      '2026-10-27T02:30:00+01:00',
    ]);
    expect(runs.map((r) => new Date(r).toISOString())).toEqual([
      '2026-10-23T00:30:00.000Z',
      '2026-10-24T00:30:00.000Z',
      '2026-10-25T00:30:00.000Z',
      '2026-10-26T01:30:00.000Z',
      '2026-10-27T01:30:00.000Z',
    ]);
  });

  it('gives the same next run whenever it is computed (a run taken late, a sync in the repeated hour)', () => {
    expectNextFromAnywhere(daily, SPRING);
    expectNextFromAnywhere(daily, FALL);
  });

  it("is where BullMQ's default strategy (cron-parser 5.10 in the zone) goes wrong", () => {
    // Computed during the second 01:00–02:00 UTC pass of 02:xx on 25 October (a worker taking the
    // 02:30 run late, or a scheduler upserted then), the default names the second 02:30 a new run.
    const inRepeatedHour = at('2026-10-25T01:10:00Z');
    const repeat = { pattern: '30 2 * * *', tz: PARIS };
    expect(defaultRepeatStrategy(inRepeatedHour, repeat)).toBe(at('2026-10-25T01:30:00Z'));
    expect(nextRun(daily, inRepeatedHour)).toBe(at('2026-10-26T01:30:00Z'));
  });
});

describe('a run every 30 minutes in Europe/Paris', () => {
  const halfHourly = timing('*/30 * * * *');
  const perLocalDay = (runs: number[]) => {
    const days = new Map<string, number>();
    for (const d of local(PARIS, runs).map((r) => r.slice(0, 10))) days.set(d, (days.get(d) ?? 0) + 1);
    return Object.fromEntries(days);
  };

  it('follows elapsed time: 46 runs on the 23-hour spring-forward day, none in the skipped hour', () => {
    const runs = runsBetween(halfHourly, ...SPRING);
    expect(perLocalDay(runs)).toEqual({
      '2026-03-27': 48,
      '2026-03-28': 48,
      '2026-03-29': 46,
      '2026-03-30': 48,
      '2026-03-31': 48,
    });
    const night = runs.filter((r) => r >= at('2026-03-28T23:30:00Z') && r <= at('2026-03-29T01:30:00Z'));
    expect(local(PARIS, night)).toEqual([
      '2026-03-29T00:30:00+01:00',
      '2026-03-29T01:00:00+01:00',
      '2026-03-29T01:30:00+01:00',
      '2026-03-29T03:00:00+02:00',
      '2026-03-29T03:30:00+02:00',
    ]);
    expect(new Set(runs).size).toBe(runs.length);
  });

  it('runs both passes of the repeated hour: 50 runs on the 25-hour fall-back day, 30 minutes apart', () => {
    const runs = runsBetween(halfHourly, ...FALL);
    expect(perLocalDay(runs)).toEqual({
      '2026-10-23': 48,
      '2026-10-24': 48,
      '2026-10-25': 50,
      '2026-10-26': 48,
      '2026-10-27': 48,
    });
    const night = runs.filter((r) => r >= at('2026-10-24T23:30:00Z') && r <= at('2026-10-25T02:00:00Z'));
    expect(local(PARIS, night)).toEqual([
      '2026-10-25T01:30:00+02:00',
      '2026-10-25T02:00:00+02:00',
      '2026-10-25T02:30:00+02:00',
      '2026-10-25T02:00:00+01:00',
      '2026-10-25T02:30:00+01:00',
      '2026-10-25T03:00:00+01:00',
    ]);
    for (let i = 1; i < runs.length; i++) expect(runs[i]! - runs[i - 1]!).toBe(30 * 60_000);
  });

  it('gives the same next run whenever it is computed', () => {
    expectNextFromAnywhere(halfHourly, SPRING);
    expectNextFromAnywhere(halfHourly, FALL);
  });
});

describe('other patterns and zones', () => {
  it('every second hour: 02:00 shifted to 03:00 in spring, once at the first 02:00 in autumn', () => {
    const everyOther = timing('0 */2 * * *');
    const spring = runsBetween(everyOther, at('2026-03-29T00:00:00+01:00'), at('2026-03-29T06:00:00+02:00'));
    expect(local(PARIS, spring)).toEqual([
      '2026-03-29T00:00:00+01:00',
      '2026-03-29T03:00:00+02:00',
      '2026-03-29T04:00:00+02:00',
    ]);
    const fall = runsBetween(everyOther, at('2026-10-25T00:00:00+02:00'), at('2026-10-25T06:00:00+01:00'));
    expect(local(PARIS, fall)).toEqual([
      '2026-10-25T00:00:00+02:00',
      '2026-10-25T02:00:00+02:00',
      '2026-10-25T04:00:00+01:00',
    ]);
    expectNextFromAnywhere(everyOther, SPRING);
    expectNextFromAnywhere(everyOther, FALL);
  });

  it('the southern hemisphere: Sydney falls back on 5 April and springs forward on 4 October 2026', () => {
    const sydney = timing('30 2 * * *', 0, 'Australia/Sydney');
    const april = runsBetween(sydney, at('2026-04-04T00:00:00+11:00'), at('2026-04-07T00:00:00+10:00'));
    expect(local('Australia/Sydney', april)).toEqual([
      '2026-04-04T02:30:00+11:00',
      '2026-04-05T02:30:00+11:00',
      '2026-04-06T02:30:00+10:00',
    ]);
    const october = runsBetween(sydney, at('2026-10-03T00:00:00+10:00'), at('2026-10-06T00:00:00+11:00'));
    expect(local('Australia/Sydney', october)).toEqual([
      '2026-10-03T02:30:00+10:00',
      '2026-10-04T03:30:00+11:00',
      '2026-10-05T02:30:00+11:00',
    ]);
  });

  it('the spread moves every run later by the same duration, across the changes too', () => {
    const spread = timing('30 2 * * *', 17 * 60_000 + 3_000);
    expect(
      local(PARIS, runsBetween(spread, at('2026-03-28T00:00:00+01:00'), at('2026-03-31T00:00:00+02:00'))),
    ).toEqual(['2026-03-28T02:47:03+01:00', '2026-03-29T03:47:03+02:00', '2026-03-30T02:47:03+02:00']);
    // Strictly after: the run at hand is never the next one.
    const run = at('2026-03-30T00:47:03Z');
    expect(nextRun(spread, run)).toBe(at('2026-03-31T00:47:03Z'));
    expect(nextRun(spread, run - 1)).toBe(run);
  });

  it('wall times in a zone: one instant, two in the repeated hour, none (shifted) in the skipped one', () => {
    expect(instantsOf(PARIS, Date.UTC(2026, 0, 15, 3, 0))).toEqual({
      occurrences: [at('2026-01-15T02:00:00Z')],
    });
    expect(instantsOf(PARIS, Date.UTC(2026, 9, 25, 2, 30))).toEqual({
      occurrences: [at('2026-10-25T00:30:00Z'), at('2026-10-25T01:30:00Z')],
    });
    expect(instantsOf(PARIS, Date.UTC(2026, 2, 29, 2, 30))).toEqual({
      occurrences: [],
      shifted: at('2026-03-29T01:30:00Z'),
    });
  });
});

describe('the strategy BullMQ is given', () => {
  it("times our schedulers' runs (marked by their spread) and leaves anyone else's to BullMQ's default", async () => {
    const after = at('2026-10-25T01:10:00Z');
    const ours = { pattern: '30 2 * * *', tz: PARIS, [SPREAD_KEY]: 5_000 };
    expect(await repeatStrategy(after, ours)).toBe(at('2026-10-26T01:30:05Z'));
    const theirs = { pattern: '30 2 * * *', tz: PARIS };
    expect(await repeatStrategy(after, theirs)).toBe(defaultRepeatStrategy(after, theirs));
  });
});
