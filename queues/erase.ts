import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { dryRun, tenantId } from './fields.ts';

/**
 * A subject id exactly as the stores hold it: no surrounding space or control character, which one
 * store would read past and another not.
 */
export const subjectId = z
  .string()
  .min(1)
  .max(200)
  .regex(
    /^[^\s\p{Cc}](?:[^\p{Cc}]*[^\s\p{Cc}])?$/u,
    'must not begin or end with a space, nor hold control characters',
  );

export const payload = z.strictObject({
  tenant: tenantId,
  /** The data subject, as the personal-data map identifies people (the demo app: a user id). */
  subject: z.strictObject({ id: subjectId }),
  dryRun,
});

export interface LocationResult {
  store: 'postgres' | 'mongo';
  /** Table or collection. */
  name: string;
  action: 'delete' | 'anonymise';
  /** Rows or documents deleted or anonymised (a dry run: that would be). */
  count: number;
  /** What the verify pass found still referring to the subject, or not yet anonymised. */
  remaining: number;
}

export interface Result {
  /** The erasure's ledger id; null for a dry run, which records nothing. */
  erasureId: string | null;
  dryRun: boolean;
  deleted: number;
  anonymised: number;
  /** The verify pass found nothing left of the subject in any mapped location. */
  verified: boolean;
  /** In the order they were worked: children before the rows they refer to. */
  locations: LocationResult[];
}

export const erase = defineJob<'erase', typeof payload, Result>({
  name: 'erase',
  description: 'GDPR erasure of one data subject across every store',
  payload,
  policy: defaultPolicy,
  sensitive: ['subject'],
  redactWhenFinished: true,
});
