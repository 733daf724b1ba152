/**
 * Authenticated encryption of a byte stream in chunks (the STREAM construction, as libsodium's
 * secretstream and age do it): AES-256-GCM per chunk, the nonce binding the chunk's index and whether
 * it is the last. A flipped byte fails its chunk's tag; chunks swapped or dropped fail on their index;
 * a stream cut at any point, even between chunks, lacks its final chunk and fails. Nothing decrypted is
 * passed on before its chunk is authenticated.
 *
 * Layout: a 16-byte header (magic `DBF1`, version, chunk size, a random 7-byte nonce prefix), then
 * chunks of `chunkSize` plaintext bytes, each followed by its 16-byte tag; the last chunk holds 0 to
 * `chunkSize` bytes. Every chunk authenticates the header as associated data. Each object is sealed
 * under a key derived from the backup's data key and the object's name, so objects cannot be swapped.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { BackupFault } from './fault.ts';

const MAGIC = Buffer.from('DBF1');
const VERSION = 1;
export const HEADER_BYTES = 16;
const TAG_BYTES = 16;
const PREFIX_BYTES = 7;
export const DEFAULT_CHUNK_BYTES = 256 * 1024;
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

export type SealedStreamFault = 'not_sealed' | 'unsupported_version' | 'tampered' | 'truncated';

/** A sealed stream that does not open. */
export class SealedStreamError extends BackupFault<SealedStreamFault> {}

/** The key an object is sealed under: the backup's data key, bound to the object's name. */
export function objectKey(dataKey: Buffer, objectName: string): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), `dbfleet backup object ${objectName}`, 32));
}

function nonce(prefix: Buffer, index: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(index, PREFIX_BYTES);
  n[11] = final ? 1 : 0;
  return n;
}

/** Bytes held until they make a whole chunk, without concatenating on every write. */
class Pending {
  #parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.#parts.push(b);
    this.length += b.length;
  }
  /** The first `n` bytes (n ≤ length), removed. */
  take(n: number): Buffer {
    const all = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.length);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#parts = rest.length ? [rest] : [];
    this.length = rest.length;
    return out;
  }
}

/** Encrypts what is written to it. */
export function sealStream(key: Buffer, chunkBytes = DEFAULT_CHUNK_BYTES): Transform {
  if (!Number.isInteger(chunkBytes) || chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES)
    throw new RangeError(`chunk size must be 1 to ${MAX_CHUNK_BYTES} bytes`);
  const prefix = randomBytes(PREFIX_BYTES);
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header[4] = VERSION;
  header.writeUInt32BE(chunkBytes, 5);
  prefix.copy(header, 9);
  const pending = new Pending();
  let index = 0;
  const seal = (plain: Buffer, final: boolean) => {
    const cipher = createCipheriv('aes-256-gcm', key, nonce(prefix, index++, final));
    cipher.setAAD(header);
    return Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  };
  return new Transform({
    construct(callback) {
      this.push(header);
      callback();
    },
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      pending.push(chunk);
      // A chunk is sealed as not-the-last only once a byte after it is known to exist.
      while (pending.length > chunkBytes) this.push(seal(pending.take(chunkBytes), false));
      callback();
    },
    flush(callback: TransformCallback) {
      callback(null, seal(pending.take(pending.length), true));
    },
  });
}

/** Decrypts a sealed stream; errors with a SealedStreamError when it does not open whole. */
export function openStream(key: Buffer): Transform {
  const pending = new Pending();
  let header: Buffer | undefined;
  let prefix: Buffer | undefined;
  let sealedChunk = 0;
  let index = 0;
  const open = (sealed: Buffer, final: boolean) => {
    if (sealed.length < TAG_BYTES) throw new SealedStreamError('truncated', 'the stream ends inside a chunk');
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, nonce(prefix!, index++, final));
      decipher.setAAD(header!);
      decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
      return Buffer.concat([
        decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      throw new SealedStreamError(
        'tampered',
        `chunk ${index - 1} does not authenticate: the data was changed, reordered or cut, or the key is wrong`,
      );
    }
  };
  const opens = (sealed: Buffer, final: boolean) => {
    try {
      open(sealed, final);
      return true;
    } catch {
      return false;
    }
  };
  const readHeader = () => {
    header = pending.take(HEADER_BYTES);
    if (!header.subarray(0, 4).equals(MAGIC))
      throw new SealedStreamError('not_sealed', 'not a sealed dbfleet stream');
    if (header[4] !== VERSION)
      throw new SealedStreamError(
        'unsupported_version',
        `sealed stream version ${header[4]} is not supported`,
      );
    const chunkBytes = header.readUInt32BE(5);
    if (chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES)
      throw new SealedStreamError('not_sealed', 'the header names an impossible chunk size');
    sealedChunk = chunkBytes + TAG_BYTES;
    prefix = header.subarray(9, 9 + PREFIX_BYTES);
  };
  return new Transform({
    transform(chunk: Buffer, _encoding, callback: TransformCallback) {
      try {
        pending.push(chunk);
        if (!header && pending.length >= HEADER_BYTES) readHeader();
        // A full chunk is not the last one only if more bytes follow it.
        while (header && pending.length > sealedChunk) this.push(open(pending.take(sealedChunk), false));
        callback();
      } catch (err) {
        callback(err as Error);
      }
    },
    flush(callback: TransformCallback) {
      try {
        if (!header) throw new SealedStreamError('truncated', 'the stream ends inside its header');
        const last = pending.take(pending.length);
        try {
          callback(null, open(last, true));
        } catch (err) {
          // A whole chunk that opens as not-the-last: the stream was cut after it.
          index--;
          if (last.length === sealedChunk && opens(last, false))
            throw new SealedStreamError(
              'truncated',
              `the stream ends after chunk ${index - 1}, before its last chunk`,
            );
          throw err;
        }
      } catch (err) {
        callback(err as Error);
      }
    },
  });
}
