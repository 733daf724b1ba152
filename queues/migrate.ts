import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { dryRun, tenantId } from './fields.ts';

const version = z.string().regex(/^\d{1,18}$/, 'must be a version number');

export const payload = z
  .strictObject({
    tenant: z.union([tenantId, z.literal('all')]),
    store: z.enum(['postgres', 'mongo', 'both']).default('both'),
    /** Target version; the latest when absent going up. Required going down and for baseline. */
    to: version.optional(),
    direction: z.enum(['up', 'down']).default('up'),
    dryRun,
    /** apply (the default) runs migrations; status reports; repair re-records; baseline adopts. */
    action: z.enum(['apply', 'status', 'repair', 'baseline']).default('apply'),
  })
  .refine((p) => p.to !== undefined || (p.direction === 'up' && p.action !== 'baseline'), {
    path: ['to'],
    message: 'is required going down and for baseline',
  });

export interface StoreResult {
  tenant: string;
  store: 'postgres' | 'mongo';
  status: 'ok' | 'failed';
  current: string | null;
  applied: string[];
  reverted: string[];
  pending: string[];
  drifted: { file: string; reason: 'edited' | 'missing' }[];
  repaired: string[];
  error?: string;
}

export interface Result {
  action: 'apply' | 'status' | 'repair' | 'baseline';
  dryRun: boolean;
  /** One row per tenant and store; a tenant whose job failed has one row with its reason. */
  tenants: (
    StoreResult | { tenant: string; store: 'both' | 'postgres' | 'mongo'; status: 'failed'; error: string }
  )[];
  summary: { tenants: number; ok: number; failed: number };
}

export const migrate = defineJob<'migrate', typeof payload, Result>({
  name: 'migrate',
  description: 'Apply versioned migrations to one tenant or fan out over all',
  payload,
  policy: { ...defaultPolicy, attempts: 3 },
  sensitive: [],
});
