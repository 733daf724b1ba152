import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { classifyError, PermanentError, TransientError } from '../../src/errors.ts';

const pgError = (code: string) => Object.assign(new Error(`pg ${code}`), { code, severity: 'ERROR' });

describe('classifyError', () => {
  it.each([
    ['42P01', 'permanent', 'undefined_table'],
    ['23505', 'permanent', 'unique_violation'],
    ['22P02', 'permanent', 'pg_22P02'],
    ['40P01', 'transient', 'deadlock'],
    ['40001', 'transient', 'serialization_failure'],
    ['57P01', 'transient', 'admin_shutdown'],
    ['08006', 'transient', 'pg_08006'],
  ])('maps PostgreSQL %s to %s', (code, kind, label) => {
    expect(classifyError(pgError(code))).toMatchObject({ kind, code: label });
  });

  it('treats refused and reset connections as transient', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT']) {
      expect(classifyError(Object.assign(new Error('x'), { code })).kind).toBe('transient');
    }
  });

  it('maps S3 throttling to transient and a missing key to permanent', () => {
    expect(
      classifyError(
        Object.assign(new Error('slow'), { name: 'SlowDown', $metadata: { httpStatusCode: 503 } }),
      ).kind,
    ).toBe('transient');
    expect(
      classifyError(
        Object.assign(new Error('gone'), { name: 'NoSuchKey', $metadata: { httpStatusCode: 404 } }),
      ),
    ).toMatchObject({
      kind: 'permanent',
      code: 's3_nosuchkey',
    });
  });

  it('maps MongoDB network errors to transient and duplicate keys to permanent', () => {
    expect(classifyError(Object.assign(new Error('net'), { name: 'MongoNetworkError' })).kind).toBe(
      'transient',
    );
    expect(
      classifyError(Object.assign(new Error('dup'), { name: 'MongoServerError', code: 11000 })).kind,
    ).toBe('permanent');
  });

  it("keeps the kind of the fleet's own errors and treats zod errors as bad input", () => {
    expect(classifyError(new PermanentError('x', 'no')).kind).toBe('permanent');
    expect(classifyError(new TransientError('y', 'later')).kind).toBe('transient');
    const zodError = z.object({ a: z.string() }).safeParse({}).error!;
    expect(classifyError(zodError)).toMatchObject({ kind: 'permanent', code: 'invalid_payload' });
  });

  it('retries what it does not recognise (attempts are bounded)', () => {
    expect(classifyError(new Error('something odd')).kind).toBe('transient');
  });
});
