import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { identifier, tenantId } from './fields.ts';

export const payload = z.strictObject({
  tenant: tenantId,
  /** Names of validation rules in the config module; all of them when absent. */
  rules: z.array(identifier).min(1).optional(),
  /** Fix what a rule knows how to fix. Off by default: validation reports, it does not change. */
  autoFix: z.boolean().default(false),
});

export interface Result {
  reportId: string;
  violations: number;
  fixed: number;
}

export const validate = defineJob<'validate', typeof payload, Result>({
  name: 'validate',
  description: "Check a tenant's data: schema, required fields, uniqueness, cross-store references",
  payload,
  policy: defaultPolicy,
  sensitive: [],
});
