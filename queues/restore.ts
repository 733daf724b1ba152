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
  /** Check the backup whole (every object read, authenticated and counted) and change nothing. */
  verifyOnly: z.boolean().default(false),
  /** Restore into another tenant that already holds data, replacing it (the replaced data is kept aside). */
  replace: z.boolean().default(false),
  /** Accept a backup made without a key (anyone could have written one). */
  allowUnencrypted: z.boolean().default(false),
  /** Where the backup is; by default where the backup catalog says, else S3. */
  source: z.enum(['s3', 'local']).optional(),
});

export interface Result {
  backupId: string;
  targetTenant: string;
  /** Every object was read, authenticated and counted before anything changed. */
  verified: true;
  restoredTables: number;
  restoredCollections: number;
  /** Rows and documents restored. */
  records: number;
  /** Erasures recorded for the backup's tenant, applied again to the restored data. */
  erasuresReapplied: number;
  /** Where the target's data as it was went: kept until dropped on purpose. */
  replaced: { schema: string | null; collections: string | null } | null;
}

export const restore = defineJob<'restore', typeof payload, Result>({
  name: 'restore',
  description: 'Verify a backup, then restore it into the same or another tenant',
  payload,
  policy: { ...defaultPolicy, attempts: 3, timeoutMs: 6 * 3600_000 },
  sensitive: [],
});
