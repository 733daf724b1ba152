/**
 * The values anonymisation writes (strategies: map.ts). Each is a function of the subject id, the
 * tenant and the ledger's pseudonym key, never of the value it replaces: re-running writes the same
 * value, the verify pass can say exactly what each field must now hold, and nothing of the old value
 * can be read back from the new one.
 */
import { createHmac } from 'node:crypto';
import type { AnonymiseStrategy } from './map.ts';

/** The shape a field's new value must have. */
export type ValueKind = 'text' | 'int4' | 'int8' | 'uuid' | 'number' | 'other';

export interface PseudonymSource {
  key: Buffer;
  tenant: string;
  subjectId: string;
}

function digest(src: PseudonymSource, domain: string): Buffer {
  return createHmac('sha256', src.key).update(`${src.tenant}\0${domain}\0${src.subjectId}`).digest();
}

/** Null for `null`; otherwise the value, as a string for PostgreSQL to cast, or a number for MongoDB. */
export function anonymisedValue(
  strategy: AnonymiseStrategy,
  kind: ValueKind,
  field: string,
  src: PseudonymSource,
): string | number | boolean | null {
  if (strategy === 'null') return null;
  if (strategy !== 'hash' && 'fixed' in strategy) return strategy.fixed;
  if (strategy === 'hash' || 'hash' in strategy) {
    const d = digest(src, strategy === 'hash' ? 'subject' : (strategy.hash.domain ?? 'subject'));
    switch (kind) {
      // Negative, so a pseudonym never equals a real (positive) id.
      case 'int4':
        return -(1 + (d.readUInt32BE(0) & 0x7fffffff)); // down to -2^31
      case 'int8':
      case 'number':
        return -(1 + d.readUIntBE(0, 6)); // 48 bits: a safe integer
      case 'uuid': {
        const h = Buffer.from(d.subarray(0, 16));
        h[6] = (h[6]! & 0x0f) | 0x40;
        h[8] = (h[8]! & 0x3f) | 0x80;
        const x = h.toString('hex');
        return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
      }
      default:
        return `anon_${d.subarray(0, 16).toString('hex')}`;
    }
  }
  const x = digest(src, `fake:${field}`).toString('hex');
  switch (strategy.fake) {
    case 'email':
      return `anon_${x.slice(0, 12)}@example.invalid`;
    case 'name':
      return `Anonymous ${x.slice(0, 8)}`;
    case 'phone':
      return `+000${BigInt(`0x${x.slice(0, 12)}`)
        .toString()
        .padStart(15, '0')
        .slice(-10)}`;
    case 'text':
      return `anon_${x.slice(0, 16)}`;
  }
}

/** Whether a strategy gives each subject a value of its own (so the subject's rows can be found by it). */
export const isSubjectUnique = (s: AnonymiseStrategy) =>
  s === 'hash' || (typeof s === 'object' && !('fixed' in s));

/** The value kind of a PostgreSQL column, from format_type(). */
export function pgKind(type: string): ValueKind {
  if (type.endsWith(']')) return 'other';
  if (/^(text|character varying|character|citext|varchar)/.test(type) || type.endsWith('citext'))
    return 'text';
  if (type === 'integer') return 'int4';
  if (type === 'bigint') return 'int8';
  if (type === 'uuid') return 'uuid';
  return 'other';
}

export function strategyFits(strategy: AnonymiseStrategy, kind: ValueKind): string | undefined {
  if (strategy === 'null' || (typeof strategy === 'object' && 'fixed' in strategy)) return undefined;
  if (strategy === 'hash' || 'hash' in strategy)
    return kind === 'other' ? 'hash needs a text, integer, bigint or uuid column' : undefined;
  return kind === 'text' ? undefined : 'fake needs a text column';
}
