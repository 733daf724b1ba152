import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { tenantId } from './fields.ts';

export const payload = z.object({
  tenant: tenantId,
  backupId: z.string().regex(/^[A-Za-z0-9._-]{1,128}$/, 'must be a backup id'),
  /** Restore into another tenant; the backup's own tenant when absent. */
  targetTenant: tenantId.optional(),
  verifyOnly: z.boolean().default(false),
});

export interface Result {
  restoredTables: number;
  restoredCollections: number;
  erasuresReapplied: number;
}

export const restore = defineJob<'restore', typeof payload, Result>({
  name: 'restore',
  description: 'Verify a backup, then restore it into the same or another tenant',
  payload,
  policy: { ...defaultPolicy, attempts: 3, timeoutMs: 6 * 3600_000 },
  sensitive: [],
});
