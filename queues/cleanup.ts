import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { dryRun, identifier, tenantId } from './fields.ts';
import type { PolicyOutcome } from '../src/cleanup/outcome.ts';

export const payload = z.strictObject({
  tenant: tenantId,
  /** Names of retention policies in the config module; all of them when absent. */
  policies: z.array(identifier).min(1).optional(),
  dryRun,
});

/** Per policy, in config order: what it found and what it did (src/cleanup/outcome.ts). */
export interface Result {
  policies: PolicyOutcome[];
}

export const cleanup = defineJob<'cleanup', typeof payload, Result>({
  name: 'cleanup',
  description: 'Apply retention policies in small batches',
  payload,
  policy: defaultPolicy,
  sensitive: [],
});
