import { z } from 'zod';
import { defaultPolicy, defineJob } from './contract.ts';
import { identifier, store, targetName, tenantId } from './fields.ts';

const source = z.discriminatedUnion('type', [
  /** A file on the worker's host, inside one of the roots allowed by DBFLEET_FILE_ROOTS. */
  z.strictObject({ type: z.literal('file'), path: z.string().min(1) }),
  z.strictObject({
    type: z.literal('s3'),
    url: z.string().regex(/^s3:\/\/[a-z0-9][a-z0-9.-]{1,62}\/.+/, 'must look like s3://bucket/key'),
  }),
  /** Rows carried in the payload itself: for small fixtures and tests (at most 10,000). */
  z.strictObject({ type: z.literal('inline'), rows: z.array(z.unknown()).max(10_000) }),
]);

export const payload = z
  .strictObject({
    tenant: tenantId,
    target: z.strictObject({ store, name: targetName }),
    source,
    /**
     * Inferred from the file extension when absent; inline rows need none. `ejson`: one canonical
     * Extended JSON document per line (`.ejson`), for MongoDB targets: types kept (cleanup archives).
     */
    format: z.enum(['ndjson', 'ejson', 'json', 'csv']).optional(),
    /** insert: append; upsert: insert or update by `key`; replace: empty the target first. */
    mode: z.enum(['insert', 'upsert', 'replace']).default('insert'),
    /** Name of a fixture schema in the config module; required for PostgreSQL (it gives the columns). */
    schema: identifier.optional(),
    /** Columns/fields identifying a row, for upsert. */
    key: z.array(identifier).min(1).optional(),
    /**
     * Rows per batch (one transaction and checkpoint each). When absent: 50,000 for PostgreSQL, where
     * a COPY's fixed cost per batch matters, and 10,000 for MongoDB. Jobs queued before this was
     * optional carry 10,000.
     */
    batchSize: z.number().int().min(1).max(100_000).optional(),
  })
  .superRefine((p, ctx) => {
    if (p.mode === 'upsert' && !p.key) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: 'is required when mode is upsert' });
    }
    if (p.format === 'ejson' && p.target.store !== 'mongo') {
      ctx.addIssue({ code: 'custom', path: ['format'], message: 'ejson is for a mongo target' });
    }
    if (p.target.store === 'postgres' && !p.schema) {
      ctx.addIssue({ code: 'custom', path: ['schema'], message: 'is required for a postgres target' });
    }
  });

export interface Rejection {
  /** 1-based record number in the source (line for NDJSON/CSV, element for JSON). */
  line: number;
  reason: string;
}

export interface Result {
  read: number;
  loaded: number;
  rejected: number;
  /** The first rejections; all of them are stored in the control database. */
  sampleRejections: Rejection[];
  batches: number;
  resumedFrom: number;
  rowsPerSecond: number;
}

export const loadFixtures = defineJob<'load-fixtures', typeof payload, Result>({
  name: 'load-fixtures',
  description: 'Stream JSON/NDJSON/CSV from a file, S3 or inline into a tenant table or collection',
  payload,
  policy: { ...defaultPolicy, attempts: 8 },
  sensitive: ['source.rows'],
  // Inline rows may be personal data: gone from Redis once the job has finished. Such a job is
  // enqueued anew rather than retried.
  redactWhenFinished: true,
});
