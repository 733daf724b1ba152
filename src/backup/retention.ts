/**
 * Backup retention, grandfather-father-son (as restic's `forget --keep-daily/weekly/monthly/yearly`):
 * of one tenant's complete backups, the newest of each of the last N days, ISO weeks, months and
 * years that have one is kept; the newest verified backup is always kept; incomplete backups go once
 * older than a grace period. Calendar buckets are taken in a time zone (a day is the zone's day, so
 * daylight-saving changes move no backup into another day). A pure function: the plan explains,
 * backup by backup, why each is kept or deleted.
 */

export interface RetentionRules {
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  /** Running or failed backups older than this are deleted (default 1 day). */
  incompleteGraceHours?: number;
  /** IANA zone the calendar is read in (default UTC). */
  timeZone?: string;
}

export interface BackupFacts {
  backupId: string;
  tenant: string;
  state: 'running' | 'complete' | 'failed' | 'deleted';
  startedAt: Date;
  /** The last verify found it sound. */
  verified: boolean;
  /** What the last verify found wrong (`tampered`, `size`...): such a backup fills no bucket. */
  fault?: string;
  /** A running backup's last heartbeat: its grace runs from there (a long backup still alive stays). */
  lastSeenAt?: Date;
}

export interface PlannedBackup {
  backupId: string;
  keep: boolean;
  /** Why: `daily 2026-03-01`, `weekly 2026-W09`, `newest verified`, `incomplete within grace`... */
  reasons: string[];
}

/** The zone's calendar date of an instant, as numbers. */
function localDate(at: Date, timeZone: string): { y: number; m: number; d: number } {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  })
    .formatToParts(at)
    .reduce<Record<string, string>>((o, p) => ((o[p.type] = p.value), o), {});
  return { y: Number(parts.year), m: Number(parts.month), d: Number(parts.day) };
}

/** ISO 8601 week of a calendar date: `2026-W09` (the week's Thursday decides its year). */
function isoWeek({ y, m, d }: { y: number; m: number; d: number }): string {
  const date = new Date(Date.UTC(y, m - 1, d));
  date.setUTCDate(date.getUTCDate() + 4 - (date.getUTCDay() || 7)); // the week's Thursday
  const yearStart = Date.UTC(date.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((date.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${date.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

const pad = (n: number) => String(n).padStart(2, '0');

export function planRetention(
  backups: readonly BackupFacts[],
  rules: RetentionRules,
  now: Date,
): PlannedBackup[] {
  const tenants = new Set(backups.map((b) => b.tenant));
  if (tenants.size > 1) throw new Error('retention is planned one tenant at a time');
  const zone = rules.timeZone ?? 'UTC';
  const reasons = new Map(backups.map((b) => [b.backupId, [] as string[]]));
  // A backup a verify found damaged cannot be restored: it must not take the place of a sound one.
  const complete = backups
    .filter((b) => b.state === 'complete' && !b.fault)
    .sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.backupId < b.backupId ? 1 : -1));
  const buckets: [
    keyof RetentionRules & ('daily' | 'weekly' | 'monthly' | 'yearly'),
    (b: BackupFacts) => string,
  ][] = [
    [
      'daily',
      (b) => {
        const t = localDate(b.startedAt, zone);
        return `${t.y}-${pad(t.m)}-${pad(t.d)}`;
      },
    ],
    ['weekly', (b) => isoWeek(localDate(b.startedAt, zone))],
    [
      'monthly',
      (b) => {
        const t = localDate(b.startedAt, zone);
        return `${t.y}-${pad(t.m)}`;
      },
    ],
    ['yearly', (b) => String(localDate(b.startedAt, zone).y)],
  ];
  for (const [rule, bucketOf] of buckets) {
    const n = rules[rule] ?? 0;
    const seen = new Set<string>();
    for (const b of complete) {
      if (seen.size >= n) break;
      const bucket = bucketOf(b);
      if (seen.has(bucket)) continue; // an older backup of a bucket already kept
      seen.add(bucket);
      reasons.get(b.backupId)!.push(`${rule} ${bucket}`);
    }
  }
  const newestVerified = complete.find((b) => b.verified);
  if (newestVerified) reasons.get(newestVerified.backupId)!.push('newest verified');
  const graceMs = (rules.incompleteGraceHours ?? 24) * 3_600_000;
  return backups.map((b) => {
    const why = reasons.get(b.backupId)!;
    if (b.state === 'deleted') return { backupId: b.backupId, keep: false, reasons: ['already deleted'] };
    if (b.state !== 'complete') {
      const young = now.getTime() - (b.lastSeenAt ?? b.startedAt).getTime() < graceMs;
      return {
        backupId: b.backupId,
        keep: young,
        reasons: [young ? `${b.state} within grace` : `${b.state} past grace`],
      };
    }
    if (b.fault) return { backupId: b.backupId, keep: false, reasons: [`verify found ${b.fault}`] };
    return { backupId: b.backupId, keep: why.length > 0, reasons: why.length ? why : ['in no kept bucket'] };
  });
}
