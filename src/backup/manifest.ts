/**
 * A backup's manifest: written last, it is the backup's commit marker (a backup without one is
 * incomplete and never restorable). It names every object with its sizes and checksum, the wrapped
 * data key, and where the data stood (migration versions, snapshot positions). It is authenticated:
 * an HMAC under a key derived from the backup's data key, so a manifest edited or swapped in from
 * another backup is refused; a backup made without a key carries a plain SHA-256 instead, which
 * catches damage but not a forger.
 */
import { createHash, createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../jobs/envelope.ts';
import { BackupFault } from './fault.ts';
import type { KeyProvider, WrappedKey } from './keys.ts';

export const MANIFEST_FORMAT = 'dbfleet-backup/1';

const objectEntry = z.strictObject({
  key: z.string().min(1),
  name: z.string().min(1),
  /** A table's rows, a collection's documents, the PostgreSQL schema, the MongoDB collections' shapes. */
  kind: z.enum(['table', 'collection', 'postgres-schema', 'mongo-shapes']),
  compression: z.enum(['zstd', 'gzip', 'none']),
  sealed: z.boolean(),
  /** Rows or documents; 0 for schema objects. */
  records: z.number().int().min(0),
  plainBytes: z.number().int().min(0),
  storedBytes: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
});

const body = z.strictObject({
  format: z.literal(MANIFEST_FORMAT),
  tenant: z.string().min(1),
  backupId: z.string().min(1),
  runId: z.string().min(1),
  startedAt: z.string(),
  finishedAt: z.string(),
  /** The tenant's migration versions at backup time, per store. */
  migrations: z.strictObject({ postgres: z.string().nullable(), mongo: z.string().nullable() }),
  /** Where the data stood: PostgreSQL's snapshot LSN, MongoDB's cluster time (when the server has one). */
  positions: z.strictObject({ postgresLsn: z.string().nullable(), mongoClusterTime: z.string().nullable() }),
  /** The data key, wrapped; null for a backup made without a key, on purpose. */
  key: z.strictObject({ keyId: z.string(), wrapped: z.string() }).nullable(),
  objects: z.array(objectEntry),
});

export type ManifestBody = z.infer<typeof body>;
export type ManifestObject = z.infer<typeof objectEntry>;

const stored = body.extend({
  /** HMAC-SHA256 of the rest (sealed backups), or its SHA-256 (backups without a key). */
  seal: z.strictObject({
    kind: z.enum(['hmac-sha256', 'sha256']),
    value: z.string().regex(/^[0-9a-f]{64}$/),
  }),
});

export type ManifestFault =
  'manifest_unreadable' | 'manifest_tampered' | 'wrong_tenant' | 'wrong_backup' | 'unsealed';

/** A manifest that does not check out. */
export class ManifestError extends BackupFault<ManifestFault> {}

function macKey(dataKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), 'dbfleet backup manifest', 32));
}

function sealOf(
  m: ManifestBody,
  dataKey: Buffer | undefined,
): { kind: 'hmac-sha256' | 'sha256'; value: string } {
  const text = canonicalJson(m);
  return dataKey
    ? { kind: 'hmac-sha256', value: createHmac('sha256', macKey(dataKey)).update(text).digest('hex') }
    : { kind: 'sha256', value: createHash('sha256').update(text).digest('hex') };
}

/** The manifest's text as stored: the body and its seal. */
export function writeManifest(m: ManifestBody, dataKey: Buffer | undefined): string {
  if ((m.key === null) !== (dataKey === undefined))
    throw new Error('a manifest names a wrapped key exactly when its backup is sealed');
  return JSON.stringify({ ...body.parse(m), seal: sealOf(m, dataKey) }, null, 1);
}

/**
 * Reads a stored manifest, checks it was written for `expected` (tenant and backup id), unwraps the
 * data key and checks the seal. A manifest without a key is refused unless `allowUnsealed`: anyone can
 * write one, so accepting it where backups are meant to be sealed would let a forged backup in.
 * Throws ManifestError naming what is wrong, or the key provider's KeyError when the master key is
 * missing or wrong.
 */
export async function readManifest(
  text: string,
  expected: { tenant: string; backupId: string },
  keys: KeyProvider | undefined,
  options: { allowUnsealed: boolean },
): Promise<{ manifest: ManifestBody; dataKey: Buffer | undefined }> {
  let parsed: z.infer<typeof stored>;
  try {
    parsed = stored.parse(JSON.parse(text));
  } catch {
    throw new ManifestError(
      'manifest_unreadable',
      `the manifest of backup ${expected.backupId} is not a ${MANIFEST_FORMAT} manifest`,
    );
  }
  const { seal, ...manifest } = parsed;
  if (manifest.backupId !== expected.backupId)
    throw new ManifestError(
      'wrong_backup',
      `the manifest stored as backup ${expected.backupId} names another backup`,
    );
  if (manifest.tenant !== expected.tenant)
    throw new ManifestError(
      'wrong_tenant',
      `backup ${expected.backupId} is not a backup of tenant ${expected.tenant}`,
    );
  if (!manifest.key && !options.allowUnsealed)
    throw new ManifestError(
      'unsealed',
      `backup ${expected.backupId} was made without a key, and unsealed backups are not accepted here`,
    );
  let dataKey: Buffer | undefined;
  if (manifest.key) {
    if (!keys)
      throw new ManifestError(
        'manifest_tampered',
        `backup ${expected.backupId} is sealed, and no master keys are configured`,
      );
    dataKey = await keys.unwrap(manifest.key as WrappedKey);
  }
  const expectedSeal = sealOf(manifest, dataKey);
  if (
    seal.kind !== expectedSeal.kind ||
    !timingSafeEqual(Buffer.from(seal.value, 'hex'), Buffer.from(expectedSeal.value, 'hex'))
  )
    throw new ManifestError(
      'manifest_tampered',
      `the manifest of backup ${expected.backupId} was changed after it was written`,
    );
  return { manifest, dataKey };
}
