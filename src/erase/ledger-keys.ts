/**
 * The erasure ledger's keys (DBFLEET_LEDGER_KEYS: `id:base64key` pairs, the first the current one).
 * Each master key gives, through HKDF, four keys with one use each:
 * - `subject-hash`: HMAC of tenant and subject id, so the ledger can be searched by subject without
 *   holding the id;
 * - `subject-seal`: AES-256-GCM of the subject id, which a restore opens to erase the person again
 *   from restored data (the only reason the ledger keeps the id at all);
 * - `pseudonym`: the keyed hashes anonymisation writes (anonymise.ts);
 * - `receipt`: the HMAC that authenticates erasure receipts.
 * A ledger row names the key id it was made under, so rotating keeps old rows usable.
 */
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { PermanentError } from '../errors.ts';

type Use = 'subject-hash' | 'subject-seal' | 'pseudonym' | 'receipt';

export class LedgerKeys {
  readonly currentId: string;
  readonly #masters: Map<string, Buffer>;
  readonly #derived = new Map<string, Buffer>();

  constructor(masters: Map<string, Buffer>) {
    this.#masters = masters;
    this.currentId = masters.keys().next().value!;
  }

  get keyIds(): string[] {
    return [...this.#masters.keys()];
  }

  key(use: Use, keyId = this.currentId): Buffer {
    const memo = `${keyId}\0${use}`;
    let k = this.#derived.get(memo);
    if (!k) {
      const master = this.#masters.get(keyId);
      if (!master)
        throw new PermanentError(
          'unknown_ledger_key',
          `ledger key ${keyId} is not configured (DBFLEET_LEDGER_KEYS)`,
        );
      k = Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `dbfleet ledger ${use}`, 32));
      this.#derived.set(memo, k);
    }
    return k;
  }

  /** The ledger's handle on a subject: hex HMAC of tenant and id. Unlinkable across tenants. */
  subjectHash(tenant: string, subjectId: string, keyId = this.currentId): string {
    return createHmac('sha256', this.key('subject-hash', keyId))
      .update(`${tenant}\0${subjectId}`)
      .digest('hex');
  }

  /** The subject id sealed to its ledger row (`aad`: the erasure id and tenant), base64. */
  seal(subjectId: string, aad: string, keyId = this.currentId): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key('subject-seal', keyId), iv);
    cipher.setAAD(Buffer.from(aad));
    const body = Buffer.concat([cipher.update(subjectId, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]).toString('base64');
  }

  open(sealed: string, aad: string, keyId: string): string {
    const raw = Buffer.from(sealed, 'base64');
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.key('subject-seal', keyId), raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString(
        'utf8',
      );
    } catch (err) {
      if (err instanceof PermanentError) throw err;
      throw new PermanentError(
        'ledger_tampered',
        `ledger entry ${aad.split('\0')[0]} does not open with key ${keyId}`,
      );
    }
  }

  mac(text: string, keyId = this.currentId): string {
    return createHmac('sha256', this.key('receipt', keyId)).update(text).digest('base64url');
  }
}

export function ledgerKeysFrom(masters: Map<string, Buffer> | undefined): LedgerKeys | undefined {
  return masters ? new LedgerKeys(masters) : undefined;
}

export function requireLedgerKeys(keys: LedgerKeys | undefined): LedgerKeys {
  if (!keys)
    throw new PermanentError(
      'no_ledger_key',
      'no erasure ledger key is configured (DBFLEET_LEDGER_KEYS): erasures could not be recorded or kept through restores',
    );
  return keys;
}
