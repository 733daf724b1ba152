import { describe, expect, it } from 'vitest';
import { planRetention, type BackupFacts } from '../../src/backup/retention.ts';

/** A nightly backup at 01:30 Paris time over two years (2027 to 2028, a leap year), ids by date. */
function nightly(from: string, days: number, zoneOffset = (d: Date) => (isSummer(d) ? 2 : 1)): BackupFacts[] {
  const out: BackupFacts[] = [];
  const start = Date.parse(`${from}T00:00:00Z`);
  for (let i = 0; i < days; i++) {
    const day = new Date(start + i * 86_400_000);
    const at = new Date(day.getTime() + (1.5 - zoneOffset(day)) * 3_600_000);
    out.push({
      backupId: day.toISOString().slice(0, 10),
      tenant: 'acme',
      state: 'complete',
      startedAt: at,
      verified: false,
    });
  }
  return out;
}

/** Central European summer time: last Sunday of March to last Sunday of October. */
function isSummer(d: Date): boolean {
  const y = d.getUTCFullYear();
  const lastSunday = (m: number) => {
    const x = new Date(Date.UTC(y, m + 1, 0));
    return Date.UTC(y, m, x.getUTCDate() - x.getUTCDay());
  };
  return d.getTime() >= lastSunday(2) && d.getTime() < lastSunday(9);
}

const kept = (plan: { backupId: string; keep: boolean }[]) =>
  plan
    .filter((p) => p.keep)
    .map((p) => p.backupId)
    .sort();

describe('backup retention, grandfather-father-son', () => {
  const backups = nightly('2027-01-01', 731); // through 2028-12-31, with 2028-02-29
  const now = new Date('2029-01-01T12:00:00Z');

  it('keeps the newest of the last N days, ISO weeks, months and years, read in the zone', () => {
    const plan = planRetention(
      backups,
      { daily: 7, weekly: 4, monthly: 12, yearly: 3, timeZone: 'Europe/Paris' },
      now,
    );
    const expected = [
      // daily: the last seven days
      ...['2028-12-25', '2028-12-26', '2028-12-27', '2028-12-28', '2028-12-29', '2028-12-30', '2028-12-31'],
      // weekly: the Sundays ending the last four ISO weeks (2028-12-31, W52, is already daily)
      '2028-12-24',
      '2028-12-17',
      '2028-12-10',
      // monthly: the last day of each of the last twelve months
      '2028-01-31',
      '2028-02-29',
      '2028-03-31',
      '2028-04-30',
      '2028-05-31',
      '2028-06-30',
      '2028-07-31',
      '2028-08-31',
      '2028-09-30',
      '2028-10-31',
      '2028-11-30',
      // yearly: 2027's last day (2028's is already kept)
      '2027-12-31',
    ];
    expect(kept(plan)).toEqual([...new Set(expected)].sort());
    const byId = new Map(plan.map((p) => [p.backupId, p]));
    expect(byId.get('2028-12-31')!.reasons).toEqual([
      'daily 2028-12-31',
      'weekly 2028-W52',
      'monthly 2028-12',
      'yearly 2028',
    ]);
    expect(byId.get('2028-02-29')!.reasons).toEqual(['monthly 2028-02']);
    expect(byId.get('2028-06-15')).toEqual({
      backupId: '2028-06-15',
      keep: false,
      reasons: ['in no kept bucket'],
    });
  });

  it('a backup at 01:30 local time stays in its own day across both daylight-saving changes', () => {
    // In UTC the spring-forward night's backup is at 23:30 the day before: read in UTC, two
    // backups share a day and one day has none.
    const plan = planRetention(backups, { daily: 731, timeZone: 'Europe/Paris' }, now);
    expect(kept(plan)).toHaveLength(731);
    const utc = planRetention(backups, { daily: 731 }, now);
    expect(kept(utc).length).toBeLessThan(731);
  });

  it('the newest verified backup survives any rules; incomplete ones go after the grace; one tenant at a time', () => {
    const few: BackupFacts[] = [
      {
        backupId: 'old-verified',
        tenant: 'acme',
        state: 'complete',
        startedAt: new Date('2028-01-01T00:00:00Z'),
        verified: true,
      },
      {
        backupId: 'newer',
        tenant: 'acme',
        state: 'complete',
        startedAt: new Date('2028-06-01T00:00:00Z'),
        verified: false,
      },
      {
        backupId: 'crashed',
        tenant: 'acme',
        state: 'running',
        startedAt: new Date('2028-12-30T00:00:00Z'),
        verified: false,
      },
      {
        backupId: 'running',
        tenant: 'acme',
        state: 'running',
        startedAt: new Date('2029-01-01T11:00:00Z'),
        verified: false,
      },
      {
        backupId: 'failed',
        tenant: 'acme',
        state: 'failed',
        startedAt: new Date('2028-12-01T00:00:00Z'),
        verified: false,
      },
    ];
    expect(planRetention(few, {}, now)).toEqual([
      { backupId: 'old-verified', keep: true, reasons: ['newest verified'] },
      { backupId: 'newer', keep: false, reasons: ['in no kept bucket'] },
      { backupId: 'crashed', keep: false, reasons: ['running past grace'] },
      { backupId: 'running', keep: true, reasons: ['running within grace'] },
      { backupId: 'failed', keep: false, reasons: ['failed past grace'] },
    ]);
    expect(() => planRetention([...few, { ...few[0]!, backupId: 'x', tenant: 'other' }], {}, now)).toThrow(
      /one tenant/,
    );
  });

  it('a backup a verify found damaged fills no bucket: the sound one of its day is kept', () => {
    const day = (d: number, h: number) => new Date(Date.UTC(2026, 2, d, h));
    const b = (backupId: string, at: Date, extra: Partial<BackupFacts> = {}): BackupFacts => ({
      backupId,
      tenant: 'acme',
      state: 'complete',
      startedAt: at,
      verified: false,
      ...extra,
    });
    const plan = planRetention(
      [
        b('good-9', day(9, 1), { verified: true }),
        b('tampered-9', day(9, 13), { fault: 'tampered' }),
        b('good-10', day(10, 1)),
      ],
      { daily: 2 },
      day(11, 0),
    );
    expect(plan).toEqual([
      { backupId: 'good-9', keep: true, reasons: ['daily 2026-03-09', 'newest verified'] },
      { backupId: 'tampered-9', keep: false, reasons: ['verify found tampered'] },
      { backupId: 'good-10', keep: true, reasons: ['daily 2026-03-10'] },
    ]);
  });
});
