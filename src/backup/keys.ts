/**
 * Envelope keys for backups. Each backup gets its own random data key; what is stored beside the
 * backup is that key wrapped (encrypted and authenticated) by a master key, named by its key id. Master
 * keys come from a KeyProvider: the environment's by default, a KMS behind the same interface.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { BackupFault } from './fault.ts';

export const DATA_KEY_BYTES = 32;

export interface WrappedKey {
  /** The master key that wrapped it. */
  keyId: string;
  /** IV, ciphertext and tag of the data key (AES-256-GCM), base64. */
  wrapped: string;
}

/** Where master keys live. A KMS implements the same two calls. */
export interface KeyProvider {
  /** Wraps a data key with the current master key. */
  wrap(dataKey: Buffer): Promise<WrappedKey>;
  /** Unwraps a data key with the master key it names; throws KeyError if that key is not known. */
  unwrap(key: WrappedKey): Promise<Buffer>;
}

/** A master key that is missing, or a wrapped key that does not open with it. */
export class KeyError extends BackupFault<'unknown_key' | 'wrong_key'> {}

const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Master keys from a string such as DBFLEET_BACKUP_KEYS: `id:base64key` pairs, comma-separated, the
 * first being the one new backups use; the others still open older backups (rotation). Each key is
 * 32 random bytes (`openssl rand -base64 32`).
 */
export function parseMasterKeys(text: string): Map<string, Buffer> {
  const keys = new Map<string, Buffer>();
  for (const [i, entry] of text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)
    .entries()) {
    const colon = entry.indexOf(':');
    const id = entry.slice(0, colon);
    const key = Buffer.from(entry.slice(colon + 1), 'base64');
    // The key itself is never quoted: only which entry is wrong.
    if (colon < 1 || !KEY_ID.test(id))
      throw new Error(`master key ${i + 1}: must be <id>:<base64 key>, the id [A-Za-z0-9._-]`);
    if (key.length !== DATA_KEY_BYTES)
      throw new Error(`master key ${id}: must be ${DATA_KEY_BYTES} bytes, base64`);
    if (keys.has(id)) throw new Error(`master key ${id}: given twice`);
    keys.set(id, key);
  }
  if (keys.size === 0) throw new Error('no master key given');
  return keys;
}

/** Master keys held in memory (from the environment): AES-256-GCM key wrapping. */
export class StaticKeyProvider implements KeyProvider {
  readonly #keys: Map<string, Buffer>;
  readonly #current: string;

  constructor(keys: Map<string, Buffer>) {
    this.#keys = keys;
    this.#current = keys.keys().next().value!;
  }

  async wrap(dataKey: Buffer): Promise<WrappedKey> {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.#current)!, iv);
    cipher.setAAD(Buffer.from(this.#current));
    const sealed = Buffer.concat([cipher.update(dataKey), cipher.final()]);
    return {
      keyId: this.#current,
      wrapped: Buffer.concat([iv, sealed, cipher.getAuthTag()]).toString('base64'),
    };
  }

  async unwrap(key: WrappedKey): Promise<Buffer> {
    const master = this.#keys.get(key.keyId);
    if (!master) throw new KeyError('unknown_key', `master key ${key.keyId} is not configured`);
    const raw = Buffer.from(key.wrapped, 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', master, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(key.keyId));
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
    } catch {
      throw new KeyError('wrong_key', `the data key does not open with master key ${key.keyId}`);
    }
  }
}

export function newDataKey(): Buffer {
  return randomBytes(DATA_KEY_BYTES);
}
