import { describe, expect, it } from 'vitest';
import { canonicalJson, jobIdForKey, payloadDigest, redactPaths } from '../../src/jobs/envelope.ts';
import { copyLine } from '../../src/stores/copy-text.ts';
import { checkAuthorization, isLoopback } from '../../src/board/auth.ts';
import { loadEnv } from '../../src/config/env.ts';
import { redactUrl } from '../../src/logger.ts';

describe('job envelope helpers', () => {
  it('digests equal payloads equally whatever their key order', () => {
    expect(payloadDigest('backup', { a: 1, b: { c: 2, d: 3 } })).toBe(
      payloadDigest('backup', { b: { d: 3, c: 2 }, a: 1 }),
    );
    expect(canonicalJson({ b: 1, a: 2 })).toBe('{"a":2,"b":1}');
  });

  it('writes the same text as JSON.stringify with a key-sorting replacer', () => {
    const sortKeys = (_key: string, v: unknown) =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.fromEntries(
            Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
          )
        : v;
    const value = {
      z: [3, { y: null, x: 'é"\\\n' }, undefined, [true]],
      a: { when: new Date(0), skip: undefined, fn: () => 1, n: -0.5e-7 },
      B: '',
    };
    expect(canonicalJson(value)).toBe(JSON.stringify(value, sortKeys));
    expect(canonicalJson(null)).toBe('null');
    expect(canonicalJson([undefined])).toBe('[null]');
  });

  it('digests a payload without its sensitive paths: an erasure digest cannot confirm a guessed subject', () => {
    const erase = (id: string) => ({ tenant: 'acme', subject: { id }, dryRun: false });
    expect(payloadDigest('erase', erase('alice'))).toBe(payloadDigest('erase', erase('bob')));
    expect(payloadDigest('erase', erase('alice'))).not.toBe(
      payloadDigest('erase', { ...erase('alice'), tenant: 'globex' }),
    );
  });

  it('hashes idempotency keys so a key holding personal data does not reach Redis', () => {
    const id = jobIdForKey('erase:alice@example.com');
    expect(id).toMatch(/^k-[0-9a-f]{40}$/);
    expect(id).toBe(jobIdForKey('erase:alice@example.com'));
  });

  it('redacts sensitive paths without touching the original', () => {
    const payload = { tenant: 'acme', subject: { id: 'alice' }, source: { rows: [1] } };
    expect(redactPaths(payload, ['subject', 'source.rows'])).toEqual({
      tenant: 'acme',
      subject: '[redacted]',
      source: { rows: '[redacted]' },
    });
    expect(payload.subject.id).toBe('alice');
  });
});

describe('COPY text encoding', () => {
  it('escapes tabs, newlines and backslashes, and writes nulls as \\N', () => {
    const text = copyLine({ a: 'x\ty\nz\\', b: null, c: true, d: { k: 1 }, e: new Date(0) }, [
      'a',
      'b',
      'c',
      'd',
      'e',
    ]);
    expect(text).toBe('x\\ty\\nz\\\\\t\\N\tt\t{"k":1}\t1970-01-01T00:00:00.000Z\n');
  });
});

describe('board auth', () => {
  const creds = { user: 'ops', password: 'correct horse battery', token: 'a'.repeat(32) };
  const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

  it('accepts the right basic credentials or token and nothing else', () => {
    expect(checkAuthorization(basic('ops', 'correct horse battery'), creds)).toBe(true);
    expect(checkAuthorization(basic('ops', 'wrong'), creds)).toBe(false);
    expect(checkAuthorization(basic('root', 'correct horse battery'), creds)).toBe(false);
    expect(checkAuthorization(`Bearer ${'a'.repeat(32)}`, creds)).toBe(true);
    expect(checkAuthorization('Bearer nope', creds)).toBe(false);
    expect(checkAuthorization(undefined, creds)).toBe(false);
  });

  it('knows loopback addresses', () => {
    expect(['127.0.0.1', 'localhost', '::1', '127.1.2.3'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '::', '10.0.0.1'].some(isLoopback)).toBe(false);
  });
});

describe('environment', () => {
  it('names every missing or invalid variable in one message', () => {
    expect(() => loadEnv({ DBFLEET_REDIS_URL: 'http://nope', DBFLEET_BOARD_PORT: 'x' })).toThrow(
      /DBFLEET_REDIS_URL: must be a redis: or rediss: URL[\s\S]*DBFLEET_CONTROL_DATABASE_URL: is required[\s\S]*DBFLEET_TENANT_MONGO_URL: is required[\s\S]*DBFLEET_BOARD_PORT/,
    );
  });

  it('reads backup master keys, naming a bad one without quoting any key', () => {
    const base = {
      DBFLEET_REDIS_URL: 'redis://127.0.0.1:6379',
      DBFLEET_CONTROL_DATABASE_URL: 'postgres://u:p@127.0.0.1/db',
      DBFLEET_TENANT_MONGO_URL: 'mongodb://127.0.0.1/',
    };
    const key = Buffer.alloc(32, 7).toString('base64');
    expect([
      ...loadEnv({ ...base, DBFLEET_BACKUP_KEYS: `k2:${key},k1:${key}` }).DBFLEET_BACKUP_KEYS!.keys(),
    ]).toEqual(['k2', 'k1']);
    const short = Buffer.alloc(8, 9).toString('base64');
    const attempt = () => loadEnv({ ...base, DBFLEET_BACKUP_KEYS: `k1:${short}` });
    expect(attempt).toThrow(/DBFLEET_BACKUP_KEYS: master key k1: must be 32 bytes, base64/);
    expect(attempt).not.toThrow(new RegExp(short.replace(/[+/=]/g, '.')));
  });

  it('hides passwords in connection URLs inside log text', () => {
    expect(redactUrl('connect postgres://app:s3cret@db:5432/x failed')).toBe(
      'connect postgres://app:***@db:5432/x failed',
    );
  });
});
