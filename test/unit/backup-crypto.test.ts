import { randomBytes } from 'node:crypto';
import { Readable, type Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { KeyError, newDataKey, parseMasterKeys, StaticKeyProvider } from '../../src/backup/keys.ts';
import {
  HEADER_BYTES,
  objectKey,
  openStream,
  sealStream,
  SealedStreamError,
} from '../../src/backup/sealed-stream.ts';

const CHUNK = 64;
const SEALED_CHUNK = CHUNK + 16;

/** Writes `data` in pieces of odd sizes, as a network or file stream would. */
function pieces(data: Buffer): Readable {
  const parts: Buffer[] = [];
  for (let i = 0, n = 1; i < data.length; i += n, n = (n * 7) % 97 || 1) parts.push(data.subarray(i, i + n));
  return Readable.from(parts);
}

/** Runs `data` through `transform` in odd-sized pieces; rejects with the transform's error. */
async function through(data: Buffer, transform: Transform): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(pieces(data), transform, async (source: AsyncIterable<Buffer>) => {
    for await (const chunk of source) out.push(chunk);
  });
  return Buffer.concat(out);
}

const seal = (data: Buffer, key: Buffer) => through(data, sealStream(key, CHUNK));
const open = (sealed: Buffer, key: Buffer) => through(sealed, openStream(key));

describe('sealed streams', () => {
  const key = objectKey(newDataKey(), 'postgres/users');

  it('round-trips any length, whatever the write sizes', async () => {
    for (const length of [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 1000]) {
      const data = randomBytes(length);
      const sealed = await seal(data, key);
      expect(sealed.length).toBe(HEADER_BYTES + Math.max(1, Math.ceil(length / CHUNK)) * 16 + length);
      expect(await open(sealed, key)).toEqual(data);
    }
  });

  it('refuses a flipped byte anywhere, naming the fault', async () => {
    const sealed = await seal(randomBytes(5 * CHUNK + 10), key);
    for (let at = 0; at < sealed.length; at += 7) {
      const bad = Buffer.from(sealed);
      bad[at]! ^= 0x01;
      const err = await open(bad, key).catch((e: unknown) => e);
      expect(err, `byte ${at}`).toBeInstanceOf(SealedStreamError);
      expect((err as SealedStreamError).fault).toMatch(/^(tampered|not_sealed|unsupported_version)$/);
    }
  });

  it('refuses a stream cut anywhere, at a chunk boundary too, or with bytes added', async () => {
    const sealed = await seal(randomBytes(4 * CHUNK), key);
    for (let length = 0; length < sealed.length; length++) {
      const err = await open(sealed.subarray(0, length), key).catch((e: unknown) => e);
      expect(err, `cut at ${length}`).toBeInstanceOf(SealedStreamError);
    }
    const boundary = HEADER_BYTES + 2 * SEALED_CHUNK;
    await expect(open(sealed.subarray(0, boundary), key)).rejects.toMatchObject({
      fault: 'truncated',
      message: 'the stream ends after chunk 1, before its last chunk',
    });
    await expect(open(Buffer.concat([sealed, Buffer.from('x')]), key)).rejects.toMatchObject({
      fault: 'tampered',
    });
  });

  it('refuses chunks reordered or dropped, another key, and another object’s key', async () => {
    const sealed = await seal(randomBytes(3 * CHUNK + 5), key);
    const chunk = (i: number) =>
      sealed.subarray(HEADER_BYTES + i * SEALED_CHUNK, HEADER_BYTES + (i + 1) * SEALED_CHUNK);
    const header = sealed.subarray(0, HEADER_BYTES);
    const last = sealed.subarray(HEADER_BYTES + 3 * SEALED_CHUNK);
    const swapped = Buffer.concat([header, chunk(1), chunk(0), chunk(2), last]);
    const dropped = Buffer.concat([header, chunk(0), chunk(2), last]);
    for (const bad of [swapped, dropped])
      await expect(open(bad, key)).rejects.toMatchObject({ fault: 'tampered' });
    await expect(open(sealed, objectKey(newDataKey(), 'postgres/users'))).rejects.toMatchObject({
      fault: 'tampered',
    });
    await expect(open(sealed, objectKey(newDataKey(), 'postgres/playlists'))).rejects.toMatchObject({
      fault: 'tampered',
    });
    await expect(open(Buffer.from('plain text, not sealed at all'), key)).rejects.toMatchObject({
      fault: 'not_sealed',
    });
  });
});

describe('envelope keys', () => {
  const b64 = () => randomBytes(32).toString('base64');

  it('wraps each data key with the current master key; older keys still unwrap (rotation)', async () => {
    const old = b64();
    const before = new StaticKeyProvider(parseMasterKeys(`k2025:${old}`));
    const dataKey = newDataKey();
    const wrappedBefore = await before.wrap(dataKey);
    expect(wrappedBefore.keyId).toBe('k2025');
    expect(wrappedBefore.wrapped).not.toContain(dataKey.toString('base64'));

    const rotated = new StaticKeyProvider(parseMasterKeys(`k2026:${b64()}, k2025:${old}`));
    expect((await rotated.wrap(dataKey)).keyId).toBe('k2026');
    expect(await rotated.unwrap(wrappedBefore)).toEqual(dataKey);
  });

  it('says whether a master key is missing or wrong, never quoting a key', async () => {
    const provider = new StaticKeyProvider(parseMasterKeys(`a:${b64()}`));
    const wrapped = await provider.wrap(newDataKey());
    await expect(new StaticKeyProvider(parseMasterKeys(`b:${b64()}`)).unwrap(wrapped)).rejects.toMatchObject({
      code: 'unknown_key',
    });
    const impostor = new StaticKeyProvider(parseMasterKeys(`a:${b64()}`));
    await expect(impostor.unwrap(wrapped)).rejects.toBeInstanceOf(KeyError);
    await expect(impostor.unwrap(wrapped)).rejects.toMatchObject({ code: 'wrong_key' });
    const secret = randomBytes(16).toString('base64');
    expect(() => parseMasterKeys(`short:${secret}`)).toThrow(/^master key short: must be 32 bytes, base64$/);
    expect(() => parseMasterKeys(secret)).toThrow(/^master key 1: must be <id>:<base64 key>/);
    expect(() => parseMasterKeys('')).toThrow(/no master key given/);
  });
});
