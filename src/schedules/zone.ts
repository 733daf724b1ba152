/**
 * Wall-clock time in an IANA time zone, from Node's own time-zone data (Intl): the offset at an
 * instant, and the instants a local wall-clock time stands for, which are one, two (the repeated
 * hour when clocks go back) or none (the hour skipped when they go forward).
 *
 * A "wall time" here is a local date and time written as if it were UTC milliseconds (02:30 on
 * 29 March is Date.UTC(2026, 2, 29, 2, 30)), so cron patterns can be walked in UTC, where no hour
 * repeats or goes missing.
 */

export const HOUR_MS = 3_600_000;

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** Whether `zone` is an IANA zone name Node knows (an offset such as +01:00 is not one). */
export function isIanaZone(zone: string): boolean {
  try {
    const resolved = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
    return /^[A-Za-z_]+(\/[A-Za-z0-9_+-]+)*$/.test(resolved);
  } catch {
    return false;
  }
}

/** The zone's offset at instant `t` as Intl reports it (one formatting, a few microseconds). */
function offsetFromIntl(zone: string, t: number): number {
  const seconds = Math.floor(t / 1000) * 1000;
  const parts: Record<string, string> = {};
  for (const p of formatter(zone).formatToParts(new Date(seconds))) parts[p.type] = p.value;
  const asUtc = Date.UTC(
    Number(parts.year),
    Number(parts.month) - 1,
    Number(parts.day),
    Number(parts.hour),
    Number(parts.minute),
    Number(parts.second),
  );
  return asUtc - seconds;
}

/**
 * Offsets by minute, per zone: NaN for a minute in which the offset changes (none in today's
 * time-zone database, where changes fall on whole minutes). Schedules that run every second walk
 * thousands of wall times near a change; formatting each one would take a quarter of a second.
 */
const byMinute = new Map<string, Map<number, number>>();
const MINUTES_KEPT = 100_000;

/** The zone's offset from UTC at instant `t`, in milliseconds (Paris in winter: +3,600,000). */
export function offsetAt(zone: string, t: number): number {
  let minutes = byMinute.get(zone);
  if (!minutes) byMinute.set(zone, (minutes = new Map()));
  const minute = Math.floor(t / 60_000);
  let offset = minutes.get(minute);
  if (offset === undefined) {
    const first = offsetFromIntl(zone, minute * 60_000);
    offset = first === offsetFromIntl(zone, minute * 60_000 + 59_000) ? first : NaN;
    if (minutes.size >= MINUTES_KEPT) minutes.clear();
    minutes.set(minute, offset);
  }
  return Number.isNaN(offset) ? offsetFromIntl(zone, t) : offset;
}

/** The wall time at instant `t`. */
export function wallAt(zone: string, t: number): number {
  return t + offsetAt(zone, t);
}

export interface WallInstants {
  /** The instants showing this wall time, earliest first: two in a repeated hour. */
  occurrences: number[];
  /**
   * For a wall time that never shows (skipped when clocks went forward): the instant it would be
   * under the offset in force before the change, i.e. moved later by the length of the gap
   * (02:30 becomes 03:30 summer time), as RFC 5545 and JavaScript's Temporal resolve it.
   */
  shifted?: number;
}

/**
 * The instants a wall time stands for. Offsets are probed three hours either side, which covers
 * every daylight-saving change in the time-zone database (at most two hours).
 */
export function instantsOf(zone: string, wall: number): WallInstants {
  const near = wall - offsetAt(zone, wall);
  const offsets = new Set([
    offsetAt(zone, near - 3 * HOUR_MS),
    offsetAt(zone, near),
    offsetAt(zone, near + 3 * HOUR_MS),
  ]);
  const occurrences = [...offsets]
    .filter((o) => offsetAt(zone, wall - o) === o)
    .map((o) => wall - o)
    .sort((a, b) => a - b);
  if (occurrences.length > 0) return { occurrences };
  // In a gap: the earliest candidate instant lies before the change, so its offset is the old one.
  const before = offsetAt(zone, wall - Math.max(...offsets));
  return { occurrences: [], shifted: wall - before };
}

/**
 * How far the offset changes within three hours of `t` (0 away from any change): how far back or
 * ahead of `t` wall times can map to instants on the other side of it.
 */
export function offsetChangeNear(zone: string, t: number): number {
  const here = offsetAt(zone, t);
  return Math.max(
    Math.abs(here - offsetAt(zone, t - 3 * HOUR_MS)),
    Math.abs(here - offsetAt(zone, t + 3 * HOUR_MS)),
  );
}

/** `t` as ISO 8601 local time with its offset in `zone`: 2026-03-29T03:30:00+02:00. */
export function localIso(zone: string, t: number): string {
  const offset = offsetAt(zone, t);
  const local = new Date(t + offset).toISOString().slice(0, 19);
  const sign = offset < 0 ? '-' : '+';
  const minutes = Math.abs(offset) / 60_000;
  const hh = String(Math.floor(minutes / 60)).padStart(2, '0');
  const mm = String(Math.floor(minutes % 60)).padStart(2, '0');
  return `${local}${sign}${hh}:${mm}`;
}
