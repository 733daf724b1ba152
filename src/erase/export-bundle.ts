/**
 * What a subject export stores, and where (docs/export-format.md). Everything of one export is under
 * `exports/<tenant>/<export id>/`:
 *
 *   bundle    a POSIX tar (manifest.json first, then `<store>/<name>.json` per mapped location),
 *             gzip-compressed and sealed (sealed-stream.ts) under a key derived from the export's
 *             own random data key and the bundle's object name
 *   key.json  written after the bundle: the data key wrapped by a backup master key, and the
 *             bundle's size and SHA-256 as stored. Nothing secret: without the master key it opens
 *             nothing
 *
 * gzip rather than the backups' zstd: the bundle is for the person too, and gzip is what every
 * platform (and Python's standard library) reads. The data key is the export's alone, so it can be
 * handed to the person, who can then open this bundle and nothing else.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { isLegacyRunId } from '../jobs/envelope.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { WrappedKey } from '../backup/keys.ts';
import { writeObject, type StoredObjectInfo } from '../backup/object-codec.ts';
import type { SpooledFile } from './export-spool.ts';
import { tarStream, type TarEntry } from './tar.ts';

export const MANIFEST_FORMAT = 'dbfleet-subject-export/1';
export const KEY_FILE_FORMAT = 'dbfleet-subject-export-key/1';
export const MANIFEST_PATH = 'manifest.json';

/**
 * The export's id: its run id (a UUID, unique for all time), so that a retry of the run writes the
 * same objects and record again. A run id of the older `prefix:jobId` form is hashed into one.
 */
export function exportIdOf(runId: string): string {
  return isLegacyRunId(runId) ? createHash('sha256').update(runId).digest('hex').slice(0, 32) : runId;
}

export function exportPrefix(tenant: string, exportId: string): string {
  return `exports/${tenant}/${exportId}/`;
}

export const bundleKey = (tenant: string, exportId: string) => `${exportPrefix(tenant, exportId)}bundle`;
export const keyFileKey = (tenant: string, exportId: string) => `${exportPrefix(tenant, exportId)}key.json`;

/** One location's file in the bundle. */
export interface ManifestFile {
  path: string;
  store: 'postgres' | 'mongo';
  name: string;
  /** Rows or documents in the file's JSON array. */
  records: number;
  bytes: number;
  /** SHA-256 of the file, hex. */
  sha256: string;
}

export interface ExportManifest {
  format: typeof MANIFEST_FORMAT;
  exportId: string;
  tenant: string;
  createdAt: string;
  expiresAt: string;
  files: ManifestFile[];
}

export interface ExportKeyFile {
  format: typeof KEY_FILE_FORMAT;
  exportId: string;
  tenant: string;
  /** The bundle as stored: what readObject needs to read and check it. */
  object: StoredObjectInfo;
  /** The bundle's data key, wrapped by the backup master key `keyId`. */
  dataKey: WrappedKey;
}

export const locationPath = (store: string, name: string) => `${store}/${name}.json`;

/** The tar, manifest first, each location's file read back from the spool. */
function bundleTar(manifest: ExportManifest, files: readonly SpooledFile[]): Readable {
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');
  const entries: TarEntry[] = [
    { name: MANIFEST_PATH, size: manifestBytes.length, open: () => Readable.from([manifestBytes]) },
    ...manifest.files.map((f, i) => ({ name: f.path, size: f.bytes, open: () => files[i]!.open() })),
  ];
  return Readable.from(tarStream(entries, new Date(manifest.createdAt)));
}

/**
 * Writes the bundle, then key.json beside it. Either may be written again by a retry of the same
 * run: same keys, same data key (from the run's checkpoint).
 */
export async function writeBundle(o: {
  store: ObjectStore;
  manifest: ExportManifest;
  /** In the order of manifest.files. */
  files: readonly SpooledFile[];
  dataKey: Buffer;
  wrapped: WrappedKey;
  partSizeBytes?: number;
}): Promise<StoredObjectInfo> {
  const { tenant, exportId } = o.manifest;
  const key = bundleKey(tenant, exportId);
  const object = await writeObject(bundleTar(o.manifest, o.files), {
    store: o.store,
    key,
    name: key,
    compression: 'gzip',
    dataKey: o.dataKey,
    partSizeBytes: o.partSizeBytes,
  });
  const keyFile: ExportKeyFile = { format: KEY_FILE_FORMAT, exportId, tenant, object, dataKey: o.wrapped };
  await o.store.put(keyFileKey(tenant, exportId), JSON.stringify(keyFile, null, 2) + '\n');
  return object;
}
