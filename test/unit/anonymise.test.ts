import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { anonymisedValue, pgKind, strategyFits } from '../../src/erase/anonymise.ts';
import { LedgerKeys } from '../../src/erase/ledger-keys.ts';

const keys = new LedgerKeys(new Map([['l1', randomBytes(32)]]));
const src = (subjectId: string, tenant = 'acme') => ({ key: keys.key('pseudonym'), tenant, subjectId });

describe('anonymised values', () => {
  it('hash keeps the type: text, a negative int4 and int8, a version-4 UUID; the same subject gives the same value', () => {
    const text = anonymisedValue('hash', 'text', 'email', src('42'));
    expect(text).toMatch(/^anon_[0-9a-f]{32}$/);
    expect(anonymisedValue('hash', 'text', 'other_field', src('42'))).toBe(text);
    const int4 = anonymisedValue('hash', 'int4', 'n', src('42')) as number;
    expect(int4).toBeLessThan(0);
    expect(int4).toBeGreaterThanOrEqual(-(2 ** 31));
    const int8 = anonymisedValue('hash', 'int8', 'n', src('42')) as number;
    expect(int8).toBeLessThan(0);
    expect(Number.isSafeInteger(int8)).toBe(true);
    expect(anonymisedValue('hash', 'uuid', 'u', src('42'))).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
  });

  it('differs by subject, tenant, domain and key; never contains the id', () => {
    const a = anonymisedValue('hash', 'text', 'f', src('42'));
    expect(anonymisedValue('hash', 'text', 'f', src('43'))).not.toBe(a);
    expect(anonymisedValue('hash', 'text', 'f', src('42', 'other'))).not.toBe(a);
    expect(anonymisedValue({ hash: { domain: 'customer' } }, 'text', 'f', src('42'))).not.toBe(a);
    const other = new LedgerKeys(new Map([['l2', randomBytes(32)]]));
    expect(anonymisedValue('hash', 'text', 'f', { ...src('42'), key: other.key('pseudonym') })).not.toBe(a);
    const email = 'someone.unique@example.test';
    for (const s of ['hash', { fake: 'email' }, { fake: 'name' }, { fake: 'text' }] as const)
      expect(String(anonymisedValue(s, 'text', 'e', src(email)))).not.toContain('someone');
  });

  it('fakes have their shape; null and fixed are what they say', () => {
    expect(anonymisedValue({ fake: 'email' }, 'text', 'email', src('7'))).toMatch(
      /^anon_[0-9a-f]{12}@example\.invalid$/,
    );
    expect(anonymisedValue({ fake: 'name' }, 'text', 'name', src('7'))).toMatch(/^Anonymous [0-9a-f]{8}$/);
    expect(anonymisedValue({ fake: 'phone' }, 'text', 'phone', src('7'))).toMatch(/^\+000\d{10}$/);
    expect(anonymisedValue('null', 'text', 'x', src('7'))).toBeNull();
    expect(anonymisedValue({ fixed: '(erased)' }, 'text', 'x', src('7'))).toBe('(erased)');
  });

  it('strategies must fit the column', () => {
    expect(pgKind('character varying(80)')).toBe('text');
    expect(pgKind('bigint')).toBe('int8');
    expect(strategyFits('hash', pgKind('smallint'))).toMatch(/hash needs/);
    expect(strategyFits({ fake: 'email' }, pgKind('integer'))).toMatch(/fake needs a text column/);
    expect(strategyFits({ fixed: 1 }, pgKind('smallint'))).toBeUndefined();
  });
});

describe('ledger keys', () => {
  it('seal opens only with its binding and key; subject hashes are per tenant', () => {
    const sealed = keys.seal('42', 'e1\0acme');
    expect(keys.open(sealed, 'e1\0acme', 'l1')).toBe('42');
    expect(() => keys.open(sealed, 'e2\0acme', 'l1')).toThrow(/does not open/);
    expect(() => keys.open(sealed, 'e1\0acme', 'l9')).toThrow(/ledger key l9 is not configured/);
    expect(keys.subjectHash('acme', '42')).not.toBe(keys.subjectHash('other', '42'));
  });
});
