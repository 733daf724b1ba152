/**
 * Retention policies, as the config module declares them (`retention: [...]`): what a cleanup job
 * deletes. One zod schema gives both the type the operator writes and the check `defineConfig` runs,
 * so a misspelt key or a reserved name fails when the config loads, not in a job at 3 a.m.
 */
import { z } from 'zod';
import { IDENTIFIER, isReservedName } from '../../queues/fields.ts';

const name = z.string().regex(IDENTIFIER, 'must be an identifier');
const target = name.refine((n) => !isReservedName(n), "is reserved for the fleet's own records");
const days = z.number().min(0).max(36_500);

/** A value a row must hold for the policy to take it: equal to it (null: IS NULL), or one of a list. */
const scalar = z.union([z.string(), z.number(), z.boolean(), z.null()]);
const where = z.record(target, z.union([scalar, z.array(scalar).min(1).max(1_000)]));

/** How a table or collection is walked: batches sized toward a duration, with a pause between them. */
const batch = z.strictObject({
  /** Each batch is sized so that it takes about this long (default 50 ms). */
  targetMs: z.number().int().min(1).max(10_000).optional(),
  /** Rest between batches so that live traffic keeps its share (default 10 ms). */
  pauseMs: z.number().int().min(0).max(60_000).optional(),
  /** PostgreSQL: a batch waiting longer than this for a row lock gives up and is retried smaller (default 200 ms). */
  lockTimeoutMs: z.number().int().min(1).max(60_000).optional(),
  /** The first batch's size (default 1,000), and the bounds it adapts within (default 10 to 50,000). */
  initialSize: z.number().int().min(1).max(1_000_000).optional(),
  minSize: z.number().int().min(1).max(1_000_000).optional(),
  maxSize: z.number().int().min(1).max(1_000_000).optional(),
});

const dataPolicy = {
  name,
  target,
  /** The time column (timestamp, timestamptz or date) or field (a BSON date) a row's age is read from. */
  timeField: target,
  /** Rows whose time is older than this many days (0: already past, as for an expiry time) go. */
  olderThanDays: days,
  where: where.optional(),
  /** Write each batch, compressed and sealed under the backup keys, to object storage before deleting it. */
  archive: z.boolean().optional(),
  batch: batch.optional(),
};

export const retentionPolicy = z.discriminatedUnion('store', [
  z.strictObject({ store: z.literal('postgres'), ...dataPolicy }),
  z.strictObject({ store: z.literal('mongo'), ...dataPolicy }),
  /**
   * Objects under `prefix` older than N days. The prefix is folders ending in `/`, one of them exactly
   * `{tenant}`, and not the first: a tenant named like another area (`backups`) must not reach it.
   */
  z.strictObject({
    store: z.literal('objects'),
    name,
    prefix: z
      .string()
      .min(1)
      .max(512)
      .refine((p) => /^([A-Za-z0-9_.-]+\/)+\{tenant\}\/([A-Za-z0-9_.-]+\/)*$/.test(p), {
        message:
          'must be folders ending in /, one of them exactly {tenant} but not the first, e.g. tmp/{tenant}/',
      })
      .refine((p) => !p.split('/').some((folder) => folder === '.' || folder === '..'), {
        message: 'must not hold . or .. folders',
      })
      .refine((p) => !RESERVED_OBJECT_AREAS.some((area) => p.startsWith(area)), {
        message: 'must not be under backups/, exports/ or archives/: those have their own policies',
      }),
    olderThanDays: days,
  }),
  /** Cleanup archives (`archive: true`) of runs older than N days: each run's archive goes whole. */
  z.strictObject({ store: z.literal('archives'), name, olderThanDays: days }),
  /** Subject exports past their expiry: their bundles and keys are deleted (their records stay). */
  z.strictObject({ store: z.literal('exports'), name }),
  /** The fleet's own records about this tenant in the control database. */
  z.strictObject({
    store: z.literal('control'),
    name,
    records: z.enum(['audit_events', 'load_rejections']),
    olderThanDays: days,
  }),
  /** Backups, grandfather-father-son (src/backup/retention.ts). */
  z.strictObject({
    store: z.literal('backups'),
    name,
    keep: z
      .strictObject({
        daily: z.number().int().min(0).max(10_000).optional(),
        weekly: z.number().int().min(0).max(10_000).optional(),
        monthly: z.number().int().min(0).max(10_000).optional(),
        yearly: z.number().int().min(0).max(1_000).optional(),
      })
      .refine((k) => Object.values(k).some((n) => n > 0), {
        message: 'must keep at least one daily, weekly, monthly or yearly backup',
      }),
    incompleteGraceHours: z
      .number()
      .min(1)
      .max(24 * 365)
      .optional(),
    timeZone: z.string().refine(isTimeZone, 'must be an IANA time zone such as Europe/Paris').optional(),
  }),
]);

export const RESERVED_OBJECT_AREAS = ['backups/', 'exports/', 'archives/'];

export type RetentionPolicy = z.input<typeof retentionPolicy>;
export type DataPolicy = Extract<RetentionPolicy, { store: 'postgres' | 'mongo' }>;
export type BatchSettings = z.input<typeof batch>;

function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** What is wrong with the policies as declared: one line each, naming where. */
export function policyProblems(policies: readonly unknown[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  const objectAreas: [number, string][] = [];
  policies.forEach((p, i) => {
    const named = (p as { name?: unknown } | null)?.name;
    if (typeof named === 'string') {
      if (seen.has(named)) problems.push(`retention[${i}].name: ${named} is used twice`);
      seen.add(named);
    }
    const parsed = retentionPolicy.safeParse(p);
    if (!parsed.success) {
      for (const issue of parsed.error.issues)
        problems.push(`retention[${i}]${issue.path.map((k) => `.${String(k)}`).join('')}: ${issue.message}`);
      return;
    }
    const policy = parsed.data;
    if ((policy.store === 'postgres' || policy.store === 'mongo') && policy.batch) {
      const { minSize = 10, maxSize = 50_000, initialSize = 1_000 } = policy.batch;
      if (minSize > maxSize || initialSize < minSize || initialSize > maxSize)
        problems.push(`retention[${i}].batch: needs minSize <= initialSize <= maxSize`);
    }
    if (policy.store === 'postgres' || policy.store === 'mongo')
      if (policy.where && Object.hasOwn(policy.where, policy.timeField))
        problems.push(`retention[${i}].where: ${policy.timeField} is the time field already`);
    // The walk bounds `_id` itself: a condition of the policy's on it would be one too many.
    if (policy.store === 'mongo' && (policy.timeField === '_id' || Object.hasOwn(policy.where ?? {}, '_id')))
      problems.push(
        `retention[${i}]: _id cannot be the time field nor in where (collections are walked by it)`,
      );
    if (policy.store === 'objects')
      objectAreas.push([i, policy.prefix.slice(0, policy.prefix.indexOf('{tenant}'))]);
  });
  // `a/` and `a/x/{tenant}/`: the first policy, for tenant x, would reach every tenant's objects of the second.
  for (const [i, area] of objectAreas)
    for (const [j, other] of objectAreas)
      if (i !== j && other !== area && other.startsWith(area))
        problems.push(
          `retention[${i}].prefix: its folders before {tenant} hold retention[${j}]'s, which another tenant's objects would be under`,
        );
  return problems;
}
