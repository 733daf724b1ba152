import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import type { ObjectStore, StoredObject } from './object-store.ts';

/** A folder that behaves like a bucket: keys are relative paths, writes are atomic (temp file + rename). */
export class LocalObjectStore implements ObjectStore {
  readonly location: string;
  readonly #root: string;

  constructor(root: string) {
    this.#root = path.resolve(root);
    this.location = `file://${this.#root}`;
  }

  #path(key: string): string {
    const full = path.resolve(this.#root, key);
    if (!full.startsWith(this.#root + path.sep)) throw new Error(`key escapes the storage folder: ${key}`);
    return full;
  }

  async put(key: string, body: Readable | Buffer | string): Promise<void> {
    const target = this.#path(key);
    await mkdir(path.dirname(target), { recursive: true });
    const temp = `${target}.${randomUUID()}.partial`;
    try {
      await pipeline(
        typeof body === 'string' || Buffer.isBuffer(body) ? Readable.from([body]) : body,
        // Flushed to disk before the rename makes it visible: a manifest must never name lost bytes.
        createWriteStream(temp, { flush: true }),
      );
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
  }

  async get(key: string): Promise<Readable> {
    const file = this.#path(key);
    await stat(file); // fail here, with ENOENT, rather than on the stream's first read
    return createReadStream(file);
  }

  async head(key: string): Promise<StoredObject | null> {
    try {
      return { key, size: (await stat(this.#path(key))).size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<StoredObject> {
    let entries: string[];
    try {
      entries = await readdir(this.#root, { recursive: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    for (const rel of entries.sort()) {
      const key = rel.split(path.sep).join('/');
      if (!key.startsWith(prefix) || key.endsWith('.partial')) continue;
      const info = await stat(path.join(this.#root, rel));
      if (info.isFile()) yield { key, size: info.size, lastModified: info.mtime };
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.#path(key), { force: true });
  }
}
