import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { store, tenantId } from './fields.ts';

export const payload = z.strictObject({
  tenant: tenantId,
  stores: z.array(store).min(1).default(['postgres', 'mongo']),
  destination: z.enum(['s3', 'local']).default('s3'),
});

export interface Result {
  backupId: string;
  bytes: number;
  tables: number;
  collections: number;
  manifestKey: string;
}

export const backup = defineJob<'backup', typeof payload, Result>({
  name: 'backup',
  description: 'Stream, compress and encrypt every table and collection of a tenant to S3 or a folder',
  payload,
  policy: { ...defaultPolicy, timeoutMs: 6 * 3600_000 },
  sensitive: [],
});
