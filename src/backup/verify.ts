/**
 * Opening a backup and checking it without restoring it. Quick: the manifest opens (its seal, its
 * tenant and id, the master key) and every object it names is stored with the size it names. Deep:
 * also every object is read whole, its stored bytes hashed, every sealed chunk authenticated, the
 * data decompressed and its rows or documents counted against the manifest.
 */
import { Transform, Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ObjectStore } from '../storage/object-store.ts';
import { readText } from './backup-tenant.ts';
import { BackupFault } from './fault.ts';
import type { KeyProvider } from './keys.ts';
import {
  backupPrefix,
  collectionObject,
  manifestKey,
  memberOf,
  MONGO_SHAPES_OBJECT,
  POSTGRES_SCHEMA_OBJECT,
  tableObject,
} from './layout.ts';
import { ManifestError, readManifest, type ManifestBody, type ManifestObject } from './manifest.ts';
import { ObjectIntegrityError, readObject } from './object-codec.ts';

export type VerifyFault = 'manifest_missing' | 'object_missing' | 'record_count' | 'plain_size';

export class BackupVerifyError extends BackupFault<VerifyFault> {}

export interface OpenedBackup {
  manifest: ManifestBody;
  dataKey: Buffer | undefined;
  store: ObjectStore;
  /** Where its objects are: manifest keys are relative to this. */
  prefix: string;
}

/** Reads and checks a backup's manifest: the commit marker without which the backup is incomplete. */
export async function openBackup(
  store: ObjectStore,
  tenant: string,
  backupId: string,
  keys: KeyProvider | undefined,
  options: { allowUnsealed: boolean },
): Promise<OpenedBackup> {
  const key = manifestKey(tenant, backupId);
  if (!(await store.head(key)))
    throw new BackupVerifyError(
      'manifest_missing',
      `backup ${backupId} of tenant ${tenant} has no manifest: it is incomplete (it never finished, or its manifest is gone)`,
    );
  const { manifest, dataKey } = await readManifest(
    await readText(store, key),
    { tenant, backupId },
    keys,
    options,
  );
  refuseStrayObjects(manifest);
  return { manifest, dataKey, store, prefix: backupPrefix(tenant, backupId) };
}

/**
 * Every object's key must be the one the layout gives its kind and name, and no name may repeat: a
 * manifest whose keys lead elsewhere (another backup's folder) is refused, sealed or not.
 */
function refuseStrayObjects(m: ManifestBody): void {
  const seen = new Set<string>();
  for (const o of m.objects) {
    let file: string | undefined;
    if (o.kind === 'postgres-schema' && o.name === POSTGRES_SCHEMA_OBJECT.name)
      file = POSTGRES_SCHEMA_OBJECT.file;
    else if (o.kind === 'mongo-shapes' && o.name === MONGO_SHAPES_OBJECT.name)
      file = MONGO_SHAPES_OBJECT.file;
    else if (o.kind === 'table' && o.name.startsWith('postgres/tables/'))
      file = layoutFile(o.name, () => tableObject(memberOf(o.name)));
    else if (o.kind === 'collection' && o.name.startsWith('mongo/collections/'))
      file = layoutFile(o.name, () => collectionObject(memberOf(o.name)));
    if (file === undefined || o.key !== file || seen.has(o.name))
      throw new ManifestError(
        'manifest_unreadable',
        `backup ${m.backupId}: object ${JSON.stringify(o.name)} is not where the format puts it, or is listed twice`,
      );
    seen.add(o.name);
  }
}

/**
 * The layout's file for an object name read from a manifest; undefined when the name does not decode,
 * or is not the layout's own spelling of what it decodes to.
 */
function layoutFile(name: string, of: () => { name: string; file: string }): string | undefined {
  try {
    const expected = of();
    return expected.name === name ? expected.file : undefined;
  } catch {
    return undefined;
  }
}

/** An object's plain bytes, checked as they are read (see readObject). */
export function openObject(b: OpenedBackup, o: ManifestObject): Promise<Readable> {
  return readObject(b.store, { ...o, key: b.prefix + o.key }, b.dataKey);
}

/** A small object's whole text (the schema, the collections' shapes). */
export async function readTextObject(b: OpenedBackup, o: ManifestObject): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of await openObject(b, o)) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

/** Checks that every object is stored with its manifest size. */
export async function verifyQuick(b: OpenedBackup): Promise<void> {
  for (const o of b.manifest.objects) {
    const head = await b.store.head(b.prefix + o.key);
    if (!head)
      throw new BackupVerifyError(
        'object_missing',
        `backup ${b.manifest.backupId}: object ${o.key} is missing from the store`,
      );
    if (head.size !== o.storedBytes) throw new ObjectIntegrityError('size', o.key);
  }
}

/** Counts COPY text rows (one line each: COPY escapes newlines in values) or BSON documents. */
function recordCounter(kind: ManifestObject['kind']): Transform & { count(): number; bytes(): number } {
  let count = 0;
  let bytes = 0;
  let skip = 0; // BSON: bytes left of the current document
  const head = Buffer.alloc(4); // BSON: the next document's length, which may span chunks
  let headBytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      if (kind === 'table') {
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) count++;
      } else if (kind === 'collection') {
        for (let at = 0; at < chunk.length;) {
          if (skip > 0) {
            const n = Math.min(skip, chunk.length - at);
            skip -= n;
            at += n;
            continue;
          }
          const n = Math.min(4 - headBytes, chunk.length - at);
          chunk.copy(head, headBytes, at, at + n);
          headBytes += n;
          at += n;
          if (headBytes === 4) {
            const size = head.readInt32LE(0);
            if (size < 5) return callback(new Error('not a BSON document stream'));
            skip = size - 4;
            headBytes = 0;
            count++;
          }
        }
      }
      callback();
    },
    flush(callback) {
      callback(skip > 0 || headBytes > 0 ? new Error('the BSON stream ends inside a document') : null);
    },
  }) as Transform & { count(): number; bytes(): number };
  counter.count = () => count;
  counter.bytes = () => bytes;
  return counter;
}

/** Reads every object whole: hashed, authenticated, decompressed, its records counted. */
export async function verifyDeep(
  b: OpenedBackup,
  onObject?: (o: ManifestObject) => Promise<void> | void,
): Promise<void> {
  await verifyQuick(b);
  for (const o of b.manifest.objects) {
    const counter = recordCounter(o.kind);
    await pipeline(await openObject(b, o), counter, new Writable({ write: (_c, _e, cb) => cb() }));
    if ((o.kind === 'table' || o.kind === 'collection') && counter.count() !== o.records)
      throw new BackupVerifyError(
        'record_count',
        `backup ${b.manifest.backupId}: object ${o.key} holds ${counter.count()} records, the manifest says ${o.records}`,
      );
    if (counter.bytes() !== o.plainBytes)
      throw new BackupVerifyError(
        'plain_size',
        `backup ${b.manifest.backupId}: object ${o.key} decodes to ${counter.bytes()} bytes, the manifest says ${o.plainBytes}`,
      );
    await onObject?.(o);
  }
}
