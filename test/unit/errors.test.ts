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

  it('never keeps the values a driver quotes: PostgreSQL data and constraint errors, MongoDB server errors', () => {
    const outOfRange = Object.assign(new Error('date/time field value out of range: "0000-01-01"'), {
      code: '22008',
      severity: 'ERROR',
      where: 'COPY users, line 3, column created_at: "0000-01-01"',
    });
    expect(classifyError(outOfRange)).toEqual({
      kind: 'permanent',
      code: 'pg_22008',
      message: 'PostgreSQL refused the data: date/time value out of range (SQLSTATE 22008)',
    });
    const duplicate = Object.assign(
      new Error('duplicate key value violates unique constraint "users_email_key"'),
      {
        code: '23505',
        severity: 'ERROR',
        detail: 'Key (email)=(alice@example.com) already exists.',
        table: 'users',
        constraint: 'users_email_key',
      },
    );
    expect(classifyError(duplicate).message).toBe(
      'PostgreSQL refused the data: duplicate key (SQLSTATE 23505; table users, constraint users_email_key)',
    );
    const mongoDup = Object.assign(
      new Error(
        'E11000 duplicate key error collection: t_a.users index: email_1 dup key: { email: "alice@example.com" }',
      ),
      { name: 'MongoServerError', code: 11000, codeName: 'DuplicateKey' },
    );
    expect(classifyError(mongoDup)).toEqual({
      kind: 'permanent',
      code: 'unique_violation',
      message: 'MongoDB refused a duplicate key (index email_1)',
    });
    const mongoOther = Object.assign(new Error('cannot compare "alice" to 3'), {
      name: 'MongoServerError',
      code: 2,
      codeName: 'BadValue',
    });
    expect(classifyError(mongoOther).message).toBe('MongoDB refused the operation (BadValue, code 2)');
    const raised = Object.assign(new Error('bad email alice@example.com'), {
      code: 'P0001',
      severity: 'ERROR',
    });
    expect(classifyError(raised).message).toBe('PostgreSQL: a function raised an exception (SQLSTATE P0001)');
  });

  it('a file that is missing or a folder fails at once; a socket that is missing is retried', () => {
    const fsError = (code: string, syscall: string) => Object.assign(new Error(code), { code, syscall });
    expect(classifyError(fsError('EISDIR', 'read'))).toMatchObject({
      kind: 'permanent',
      code: 'not_a_file',
    });
    expect(classifyError(fsError('ENOENT', 'open'))).toMatchObject({
      kind: 'permanent',
      code: 'file_not_found',
    });
    expect(classifyError(fsError('ENOENT', 'connect')).kind).toBe('transient');
  });

  it('retries what it does not recognise (attempts are bounded)', () => {
    expect(classifyError(new Error('something odd')).kind).toBe('transient');
  });
});
