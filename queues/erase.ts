import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { dryRun, tenantId } from './fields.ts';

export const payload = z.strictObject({
  tenant: tenantId,
  /** The data subject, as the personal-data map identifies people (the demo app: a user id). */
  subject: z.strictObject({ id: z.string().min(1).max(200) }),
  dryRun,
});

export interface Result {
  erasureId: string;
  deleted: number;
  anonymised: number;
  verified: boolean;
}

export const erase = defineJob<'erase', typeof payload, Result>({
  name: 'erase',
  description: 'GDPR erasure of one data subject across every store',
  payload,
  policy: defaultPolicy,
  sensitive: ['subject'],
  redactWhenFinished: true,
});
