import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { dryRun, tenantId } from './fields.ts';

export const payload = z.object({
  tenant: z.union([tenantId, z.literal('all')]),
  store: z.enum(['postgres', 'mongo', 'both']).default('both'),
  /** Target version; the latest when absent going up. Required going down. */
  to: z.string().regex(/^\d+$/, 'must be a version number').optional(),
  direction: z.enum(['up', 'down']).default('up'),
  dryRun,
});

export interface Result {
  tenants: { tenant: string; store: string; applied: string[]; status: 'ok' | 'failed'; error?: string }[];
}

export const migrate = defineJob<'migrate', typeof payload, Result>({
  name: 'migrate',
  description: 'Apply versioned migrations to one tenant or fan out over all',
  payload,
  policy: { ...defaultPolicy, attempts: 3 },
  sensitive: [],
});
