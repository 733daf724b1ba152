import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { subjectId } from './erase.ts';
import { tenantId } from './fields.ts';

/** S3 refuses presigned URLs valid for longer than a week (SigV4's X-Amz-Expires limit). */
export const MAX_EXPIRES_SECONDS = 7 * 24 * 3600;
/** Below a minute, a link would expire before anyone could pass it on. */
export const MIN_EXPIRES_SECONDS = 60;

export const payload = z.strictObject({
  tenant: tenantId,
  /** The data subject, as the personal-data map identifies people (the demo app: a user id). */
  subject: z.strictObject({ id: subjectId }),
  destination: z.enum(['s3', 'local']).default('s3'),
  /** How long the bundle and its link live; the bundle is deleted once this has passed. */
  expiresInSeconds: z
    .number()
    .int()
    .min(MIN_EXPIRES_SECONDS)
    .max(MAX_EXPIRES_SECONDS)
    .default(MAX_EXPIRES_SECONDS),
});

export interface LocationExport {
  store: 'postgres' | 'mongo';
  /** Table or collection. */
  name: string;
  /** Rows or documents of the subject in the bundle. */
  records: number;
}

/** Counts, names and keys only: never a value of the subject's. */
export interface Result {
  exportId: string;
  /** The bundle's key in the object store. */
  objectKey: string;
  destination: 's3' | 'local';
  /** A presigned S3 GET URL valid until expiresAt, or for a local export the bundle's absolute path. */
  link: string;
  /** ISO time after which the link no longer works and the bundle is deleted. */
  expiresAt: string;
  /** Bytes stored (sealed and compressed). */
  bytes: number;
  /** The master key that wrapped the bundle's data key. */
  keyId: string;
  locations: LocationExport[];
  /** Rows and documents, all locations together. */
  records: number;
}

export const exportSubject = defineJob<'export-subject', typeof payload, Result>({
  name: 'export-subject',
  description:
    "GDPR access and portability: one data subject's data as an encrypted bundle with an expiring link",
  payload,
  policy: defaultPolicy,
  sensitive: ['subject'],
  redactWhenFinished: true,
});
