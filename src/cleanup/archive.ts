/**
 * Archive-before-delete: each batch a policy deletes is first written, one NDJSON line per row or
 * document, gzip-compressed and sealed as backup objects are (sealed-stream.ts), to
 *
 *   archives/<tenant>/<run id>/<policy>/key.json           the archive's data key, wrapped by a backup master key
 *   archives/<tenant>/<run id>/<policy>/<batch>.ndjson.gz  one object per batch, sealed under a key
 *                                                         derived from the data key and the object's key
 *
 * A batch's object is written before the batch's delete commits, under a name fixed by its place in
 * the walk, so a retried batch overwrites it instead of adding another. `dbfleet archives open`
 * turns an archive back into NDJSON files that load-fixtures reloads.
 */
import { PassThrough, Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { PermanentError } from '../errors.ts';
import { newDataKey, type KeyProvider, type WrappedKey } from '../backup/keys.ts';
import { objectKey, openStream, sealStream } from '../backup/sealed-stream.ts';
import type { ObjectStore } from '../storage/object-store.ts';

export const ARCHIVE_KEY_FORMAT = 'dbfleet-cleanup-archive-key/1';

export function archivePrefix(tenant: string, runId?: string, policy?: string): string {
  return `archives/${tenant}/${runId ? `${runId}/` : ''}${runId && policy ? `${policy}/` : ''}`;
}

const chunkName = (seq: number) => `${String(seq).padStart(8, '0')}.ndjson.gz`;

export interface ArchiveKeyFile {
  format: typeof ARCHIVE_KEY_FORMAT;
  tenant: string;
  runId: string;
  policy: string;
  store: 'postgres' | 'mongo';
  target: string;
  key: WrappedKey;
}

export interface ArchiveScope {
  objects: ObjectStore;
  keys: KeyProvider | undefined;
  tenant: string;
  runId: string;
  policy: string;
  store: 'postgres' | 'mongo';
  target: string;
}

export class BatchArchive {
  readonly prefix: string;
  readonly #objects: ObjectStore;
  readonly #dataKey: Buffer;

  private constructor(objects: ObjectStore, prefix: string, dataKey: Buffer) {
    this.#objects = objects;
    this.prefix = prefix;
    this.#dataKey = dataKey;
  }

  /** The run's archive of one policy: its key as a retry finds it, or a new one. */
  static async open(s: ArchiveScope): Promise<BatchArchive> {
    if (!s.keys)
      throw new PermanentError(
        'no_backup_keys',
        `policy ${s.policy} archives before deleting: no backup master key is configured (DBFLEET_BACKUP_KEYS)`,
      );
    const prefix = archivePrefix(s.tenant, s.runId, s.policy);
    const keyFile = `${prefix}key.json`;
    if (await s.objects.head(keyFile)) {
      const file = JSON.parse(await readText(s.objects, keyFile)) as ArchiveKeyFile;
      return new BatchArchive(s.objects, prefix, await s.keys.unwrap(file.key));
    }
    const dataKey = newDataKey();
    const file: ArchiveKeyFile = {
      format: ARCHIVE_KEY_FORMAT,
      tenant: s.tenant,
      runId: s.runId,
      policy: s.policy,
      store: s.store,
      target: s.target,
      key: await s.keys.wrap(dataKey),
    };
    await s.objects.put(keyFile, JSON.stringify(file, null, 2));
    return new BatchArchive(s.objects, prefix, dataKey);
  }

  /** Writes batch `seq` (its lines, without newlines), replacing what an earlier try of it wrote. */
  async write(seq: number, lines: readonly string[]): Promise<void> {
    const key = this.prefix + chunkName(seq);
    const body = Readable.from([Buffer.from(lines.map((l) => `${l}\n`).join(''))]);
    const sealed = new PassThrough();
    await Promise.all([
      pipeline(body, createGzip(), sealStream(objectKey(this.#dataKey, key)), sealed),
      this.#objects.put(key, sealed),
    ]);
  }

  /** The lines of batch `seq`, or null if it was never written. */
  async read(seq: number): Promise<string[] | null> {
    const key = this.prefix + chunkName(seq);
    if (!(await this.#objects.head(key))) return null;
    return openChunk(this.#objects, key, this.#dataKey);
  }
}

/** An archive's lines, batch by batch in walk order; each batch authenticated before it is returned. */
export async function* readArchive(
  objects: ObjectStore,
  keys: KeyProvider,
  prefix: string,
): AsyncGenerator<{ key: string; lines: string[] }> {
  const file = JSON.parse(await readText(objects, `${prefix}key.json`)) as ArchiveKeyFile;
  if (file.format !== ARCHIVE_KEY_FORMAT) throw new Error(`${prefix}key.json: not a cleanup archive key`);
  const dataKey = await keys.unwrap(file.key);
  const chunks: string[] = [];
  for await (const o of objects.list(prefix)) if (o.key.endsWith('.ndjson.gz')) chunks.push(o.key);
  for (const key of chunks.sort()) yield { key, lines: await openChunk(objects, key, dataKey) };
}

async function openChunk(objects: ObjectStore, key: string, dataKey: Buffer): Promise<string[]> {
  const parts: Buffer[] = [];
  const collect = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      parts.push(chunk);
      callback();
    },
  });
  await pipeline(await objects.get(key), openStream(objectKey(dataKey, key)), createGunzip(), collect);
  const text = Buffer.concat(parts).toString('utf8');
  return text.length ? text.slice(0, -1).split('\n') : [];
}

async function readText(objects: ObjectStore, key: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of await objects.get(key)) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}
