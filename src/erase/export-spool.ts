/**
 * Where an export keeps each location's JSON until the bundle is written. A tar header names its
 * file's size and the manifest each file's checksum, both known only once the file has been read
 * whole, and one person's listening history can be larger than a worker's memory; so each file is
 * written to a temporary file first. That file is sealed (sealed-stream.ts) under a random key held
 * only in memory: the worker's disk never holds the person's data in the clear, and what a killed
 * worker leaves behind cannot be read by anyone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { openStream, sealStream } from '../backup/sealed-stream.ts';

export interface SpooledFile {
  /** Plain bytes. */
  bytes: number;
  /** SHA-256 of the plain bytes, hex. */
  sha256: string;
  /** The plain bytes again, read back and authenticated. */
  open(): Readable;
}

class Measure extends Transform {
  bytes = 0;
  readonly hash = createHash('sha256');
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    callback(null, chunk);
  }
}

export class Spool {
  readonly #dir: string;
  #files = 0;

  private constructor(dir: string) {
    this.#dir = dir;
  }

  static async create(): Promise<Spool> {
    return new Spool(await mkdtemp(path.join(tmpdir(), 'dbfleet-export-')));
  }

  /** Writes what `source` yields to a sealed temporary file. */
  async write(source: AsyncIterable<string | Buffer>): Promise<SpooledFile> {
    const file = path.join(this.#dir, String(this.#files++));
    const key = randomBytes(32);
    const measure = new Measure();
    await pipeline(Readable.from(source), measure, sealStream(key), createWriteStream(file));
    return {
      bytes: measure.bytes,
      sha256: measure.hash.digest('hex'),
      open: () => {
        const out = openStream(key);
        pipeline(createReadStream(file), out).catch((err: unknown) => out.destroy(err as Error));
        return out;
      },
    };
  }

  async remove(): Promise<void> {
    await rm(this.#dir, { recursive: true, force: true });
  }
}

/**
 * A JSON array of already-serialised values, one per line, from batches of them (one chunk per batch
 * rather than per value); counts the values.
 */
export async function* jsonArray(
  batches: AsyncIterable<readonly string[]>,
  counted: { records: number },
): AsyncGenerator<string> {
  yield '[';
  for await (const batch of batches) {
    if (batch.length === 0) continue;
    yield (counted.records === 0 ? '\n' : ',\n') + batch.join(',\n');
    counted.records += batch.length;
  }
  yield counted.records === 0 ? ']\n' : '\n]\n';
}
