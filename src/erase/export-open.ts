/**
 * Opening a subject export: its key.json read and checked, the data key unwrapped with the master key,
 * the bundle read (every chunk authenticated, size and SHA-256 as key.json says), and its files
 * written to a folder after each was checked against the manifest. The files are written to a
 * folder beside the target and moved into place only when all of them checked out: a bundle that
 * does not open leaves nothing behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, rmdir, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { IDENTIFIER } from '../../queues/fields.ts';
import type { KeyProvider } from '../backup/keys.ts';
import { readObject } from '../backup/object-codec.ts';
import { PermanentError } from '../errors.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import {
  bundleKey,
  KEY_FILE_FORMAT,
  keyFileKey,
  locationPath,
  MANIFEST_FORMAT,
  MANIFEST_PATH,
  type ExportKeyFile,
  type ExportManifest,
} from './export-bundle.ts';
import { readTar, type TarFileSink } from './tar.ts';

/** A bundle or key.json that is not what it should be. */
export class ExportRefused extends PermanentError {
  constructor(message: string) {
    super('export_refused', message);
  }
}

const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const HEX64 = /^[0-9a-f]{64}$/;

export async function readKeyFile(
  store: ObjectStore,
  tenant: string,
  exportId: string,
): Promise<ExportKeyFile> {
  const key = keyFileKey(tenant, exportId);
  if (!(await store.head(key)))
    throw new ExportRefused(
      `export ${exportId} has no key.json in ${store.location}: incomplete, or deleted at expiry`,
    );
  const parts: Buffer[] = [];
  for await (const c of await store.get(key)) parts.push(c as Buffer);
  let k: ExportKeyFile;
  try {
    k = JSON.parse(Buffer.concat(parts).toString('utf8')) as ExportKeyFile;
  } catch {
    throw new ExportRefused(`export ${exportId}: key.json is not JSON`);
  }
  const ok =
    k?.format === KEY_FILE_FORMAT &&
    k.exportId === exportId &&
    k.tenant === tenant &&
    k.object?.key === bundleKey(tenant, exportId) &&
    k.object.name === k.object.key &&
    k.object.sealed === true &&
    k.object.compression === 'gzip' &&
    Number.isSafeInteger(k.object.storedBytes) &&
    typeof k.object.sha256 === 'string' &&
    HEX64.test(k.object.sha256) &&
    typeof k.dataKey?.keyId === 'string' &&
    typeof k.dataKey.wrapped === 'string';
  if (!ok) throw new ExportRefused(`export ${exportId}: key.json is not a ${KEY_FILE_FORMAT} of this export`);
  return k;
}

function checkManifest(text: string, keyFile: ExportKeyFile): ExportManifest {
  let m: ExportManifest;
  try {
    m = JSON.parse(text) as ExportManifest;
  } catch {
    throw new ExportRefused('the bundle manifest is not JSON');
  }
  if (m?.format !== MANIFEST_FORMAT) throw new ExportRefused(`the bundle manifest is not ${MANIFEST_FORMAT}`);
  if (m.exportId !== keyFile.exportId || m.tenant !== keyFile.tenant)
    throw new ExportRefused('the bundle manifest names another export or tenant');
  if (!Array.isArray(m.files)) throw new ExportRefused('the bundle manifest lists no files');
  const seen = new Set<string>();
  for (const f of m.files) {
    const fits =
      (f.store === 'postgres' || f.store === 'mongo') &&
      typeof f.name === 'string' &&
      IDENTIFIER.test(f.name) &&
      f.path === locationPath(f.store, f.name) &&
      Number.isSafeInteger(f.bytes) &&
      Number.isSafeInteger(f.records) &&
      typeof f.sha256 === 'string' &&
      HEX64.test(f.sha256) &&
      !seen.has(f.path);
    if (!fits) throw new ExportRefused('the bundle manifest lists a file it cannot hold');
    seen.add(f.path);
  }
  return m;
}

/** Writes a checked file to the staging folder, hashing it on the way. */
function fileSink(
  file: string,
  expected: { path: string; bytes: number; sha256: string },
  open_: Set<FileHandle>,
): TarFileSink {
  let handle: FileHandle | undefined;
  const hash = createHash('sha256');
  let bytes = 0;
  const opened = async () => {
    if (!handle) {
      await mkdir(path.dirname(file), { recursive: true });
      handle = await open(file, 'wx');
      open_.add(handle);
    }
    return handle;
  };
  return {
    async write(chunk) {
      hash.update(chunk);
      bytes += chunk.length;
      await (await opened()).write(chunk);
    },
    async end() {
      const h = await opened();
      open_.delete(h);
      await h.close();
      if (bytes !== expected.bytes || hash.digest('hex') !== expected.sha256)
        throw new ExportRefused(`${expected.path} is not the file the bundle manifest describes`);
    },
  };
}

/**
 * Opens the bundle into `outDir` (which must not exist, or be empty). Returns its manifest. The
 * dataKey is the export's own, unwrapped by `unwrapExportKey` or handed over by an operator.
 */
export async function openBundle(
  store: ObjectStore,
  keyFile: ExportKeyFile,
  dataKey: Buffer,
  outDir: string,
): Promise<ExportManifest> {
  const target = path.resolve(outDir);
  const existing = await readdir(target).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return [];
    throw err;
  });
  if (existing.length) throw new Error(`${target} is not empty`);
  const staging = `${target}.partial-${randomBytes(4).toString('hex')}`;
  await mkdir(staging, { recursive: true });
  const handles = new Set<FileHandle>();
  try {
    let manifest: ExportManifest | undefined;
    let next = 0;
    const plain = await readObject(store, keyFile.object, dataKey);
    await readTar(plain, async (entry) => {
      if (!manifest) {
        if (entry.name !== MANIFEST_PATH || entry.size > MAX_MANIFEST_BYTES)
          throw new ExportRefused('the bundle does not start with its manifest');
        const parts: Buffer[] = [];
        return {
          write: async (b) => void parts.push(Buffer.from(b)),
          end: async () => {
            const text = Buffer.concat(parts).toString('utf8');
            manifest = checkManifest(text, keyFile);
            await writeFile(path.join(staging, MANIFEST_PATH), text);
          },
        };
      }
      const expected = manifest.files[next++];
      if (!expected || entry.name !== expected.path || entry.size !== expected.bytes)
        throw new ExportRefused(
          `the bundle holds ${JSON.stringify(entry.name)}, which its manifest does not list there`,
        );
      return fileSink(path.join(staging, ...expected.path.split('/')), expected, handles);
    });
    if (!manifest || next !== manifest.files.length)
      throw new ExportRefused('the bundle lacks files its manifest lists');
    if (existing.length === 0) await rmdir(target).catch(() => undefined);
    await rename(staging, target);
    return manifest;
  } catch (err) {
    await Promise.all([...handles].map((h) => h.close().catch(() => undefined)));
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

export async function unwrapExportKey(
  keyFile: ExportKeyFile,
  keys: KeyProvider | undefined,
): Promise<Buffer> {
  if (!keys)
    throw new PermanentError(
      'no_backup_key',
      'no backup master key is configured (DBFLEET_BACKUP_KEYS): the export cannot be opened',
    );
  return keys.unwrap(keyFile.dataKey);
}
