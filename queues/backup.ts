import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { store, tenantId } from './fields.ts';

export const payload = z.strictObject({
  tenant: tenantId,
  stores: z.array(store).min(1).default(['postgres', 'mongo']),
  destination: z.enum(['s3', 'local']).default('s3'),
  /** zstd (Node's own zlib) by default; gzip for readers without zstd. */
  compression: z.enum(['zstd', 'gzip']).default('zstd'),
  /**
   * Backups are sealed under the current master key, and fail when none is configured. false makes a
   * backup without a key, on purpose; restoring it must then be allowed on purpose too.
   */
  encrypt: z.boolean().default(true),
});

export interface Result {
  backupId: string;
  /** Bytes stored, the manifest included. */
  bytes: number;
  tables: number;
  collections: number;
  /** Rows and documents. */
  records: number;
  objects: number;
  manifestKey: string;
  /** The master key that wrapped the backup's data key; null for a backup made without a key. */
  keyId: string | null;
}

export const backup = defineJob<'backup', typeof payload, Result>({
  name: 'backup',
  description: 'Stream, compress and encrypt every table and collection of a tenant to S3 or a folder',
  payload,
  policy: { ...defaultPolicy, timeoutMs: 6 * 3600_000 },
  sensitive: [],
});
