/**
 * A minimal POSIX tar (ustar) writer and reader for subject-export bundles: regular files only, names
 * of at most 100 bytes (the bundle's are `manifest.json` and `<store>/<identifier>.json`). Written by
 * hand rather than taken from npm because this is all a bundle needs, and `tar -x`, 7-Zip or Python's
 * tarfile read the result. Sizes of 8 GiB and more use the base-256 size field GNU tar, bsdtar and
 * Python read.
 */
import type { Readable } from 'node:stream';

export const BLOCK = 512;
const NAME_BYTES = 100;
/** 11 octal digits: 8 GiB - 1. Larger sizes are written base-256. */
const MAX_OCTAL_SIZE = 8 ** 11 - 1;

export class TarError extends Error {
  override name = 'TarError';
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** The 512-byte ustar header of a regular file. */
export function tarHeader(name: string, size: number, mtime: Date): Buffer {
  const h = Buffer.alloc(BLOCK);
  if (Buffer.byteLength(name) > NAME_BYTES || name.length === 0)
    throw new TarError(`tar entry name must be 1 to ${NAME_BYTES} bytes`);
  if (!Number.isSafeInteger(size) || size < 0) throw new TarError('tar entry size must be a whole number');
  h.write(name, 0, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  if (size <= MAX_OCTAL_SIZE) h.write(octal(size, 12), 124, 'ascii');
  else {
    h[124] = 0x80;
    h.writeBigUInt64BE(BigInt(size), 124 + 4);
  }
  h.write(octal(Math.max(0, Math.floor(mtime.getTime() / 1000)), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // the checksum counts its own field as spaces
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  h.write(octal(0, 8), 329, 'ascii');
  h.write(octal(0, 8), 337, 'ascii');
  h.write(octal(checksum(h), 7) + ' ', 148, 'ascii');
  return h;
}

function checksum(block: Buffer): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum;
}

/** Zero bytes that fill a file's last block. */
export function tarPadding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** Two zero blocks end an archive. */
export const TAR_END = Buffer.alloc(2 * BLOCK);

export interface TarEntry {
  name: string;
  size: number;
  /** Opened when the entry's turn comes, so that only one file is open at a time. */
  open(): Promise<Readable> | Readable;
}

/** The archive's bytes, entry by entry; fails if an entry's body is not exactly `size` bytes. */
export async function* tarStream(entries: readonly TarEntry[], mtime: Date): AsyncGenerator<Buffer> {
  for (const e of entries) {
    yield tarHeader(e.name, e.size, mtime);
    let seen = 0;
    for await (const chunk of await e.open()) {
      seen += (chunk as Buffer).length;
      if (seen > e.size) throw new TarError(`tar entry ${e.name} is longer than its ${e.size} bytes`);
      yield chunk as Buffer;
    }
    if (seen !== e.size) throw new TarError(`tar entry ${e.name} has ${seen} bytes, not ${e.size}`);
    yield tarPadding(e.size);
  }
  yield TAR_END;
}

function field(h: Buffer, at: number, len: number): string {
  const raw = h.subarray(at, at + len);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? len : nul).toString('utf8');
}

function parseSize(h: Buffer): number {
  if (h[124]! & 0x80) {
    const n = h.readBigUInt64BE(124 + 4);
    if (h.subarray(125, 128).some((b) => b !== 0) || n > BigInt(Number.MAX_SAFE_INTEGER))
      throw new TarError('tar entry size out of range');
    return Number(n);
  }
  const text = field(h, 124, 12).trim();
  if (!/^[0-7]+$/.test(text)) throw new TarError('tar header has no size');
  return parseInt(text, 8);
}

function parseHeader(h: Buffer): { name: string; size: number } {
  const stored = parseInt(field(h, 148, 8).trim(), 8);
  if (stored !== checksum(h)) throw new TarError('tar header checksum does not match');
  const type = String.fromCharCode(h[156]!);
  if (type !== '0' && type !== '\0')
    throw new TarError(`tar entry of type ${JSON.stringify(type)}: only files`);
  const prefix = field(h, 345, 155);
  const name = (prefix ? `${prefix}/` : '') + field(h, 0, NAME_BYTES);
  return { name, size: parseSize(h) };
}

/** Where a reader puts one entry's bytes. */
export interface TarFileSink {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
}

/**
 * Reads an archive, handing each file's bytes to the sink `onEntry` returns. Fails on a damaged
 * header, an entry that is not a regular file, and an archive that ends before its end blocks.
 */
export async function readTar(
  source: AsyncIterable<Buffer | string>,
  onEntry: (entry: { name: string; size: number }) => Promise<TarFileSink>,
): Promise<void> {
  let pending = Buffer.alloc(0);
  let sink: TarFileSink | undefined;
  let left = 0; // body bytes of the current entry still to come
  let pad = 0; // padding after it
  let ended = false;
  for await (const chunk of source) {
    pending = pending.length ? Buffer.concat([pending, Buffer.from(chunk)]) : Buffer.from(chunk);
    for (;;) {
      if (sink) {
        const take = Math.min(left, pending.length);
        if (take > 0) await sink.write(pending.subarray(0, take));
        pending = pending.subarray(take);
        left -= take;
        if (left > 0) break;
        await sink.end();
        sink = undefined;
        continue;
      }
      if (pad > 0) {
        const skip = Math.min(pad, pending.length);
        pending = pending.subarray(skip);
        pad -= skip;
        if (pad > 0) break;
        continue;
      }
      if (ended) {
        if (pending.some((b) => b !== 0)) throw new TarError('data after the end of the archive');
        pending = Buffer.alloc(0);
        break;
      }
      if (pending.length < BLOCK) break;
      const header = pending.subarray(0, BLOCK);
      pending = pending.subarray(BLOCK);
      if (header.every((b) => b === 0)) {
        ended = true;
        continue;
      }
      const entry = parseHeader(header);
      sink = await onEntry(entry);
      left = entry.size;
      pad = tarPadding(entry.size).length;
    }
  }
  if (sink || !ended) throw new TarError('the archive ends before its end');
}
