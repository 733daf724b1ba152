import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { tenantId } from './fields.ts';

export const payload = z.strictObject({
  tenant: tenantId,
  /** Letters, digits, `.`, `_` and `-`, starting with a letter or digit: never `..` or a path. */
  backupId: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a backup id')
    .refine((id) => !id.includes('..'), 'must be a backup id, without ".."'),
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
