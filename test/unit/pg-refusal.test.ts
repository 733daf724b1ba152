import { describe, expect, test } from 'vitest';
import { copyContext, refusalReason, rowRefusal } from '../../workers/load-fixtures/pg-refusal.ts';

// The errors' fields as PostgreSQL 15 sends them (captured from COPY into the demo's users table).
const pgError = (fields: { code: string; message: string } & Record<string, string>) =>
  Object.assign(new Error(fields.message), { severity: 'ERROR', ...fields });

const columns = ['id', 'email', 'display_name', 'country', 'birth_year', 'created_at'];
const copy = { relation: 'users', columns };

const outOfRange = pgError({
  code: '22008',
  message: 'date/time field value out of range: "0000-01-01"',
  where: 'COPY users, line 2, column created_at: "0000-01-01"',
});
const duplicate = pgError({
  code: '23505',
  message: 'duplicate key value violates unique constraint "users_email_key"',
  detail: 'Key (email)=(a@b.test) already exists.',
  where: 'COPY users, line 1',
  table: 'users',
  constraint: 'users_email_key',
});
const check = pgError({
  code: '23514',
  message: 'new row for relation "users" violates check constraint "users_birth_year_check"',
  detail: 'Failing row contains (2, c@d.test, Ann, null, 2020, 2026-01-01 00:00:00+00).',
  where: 'COPY users, line 7: "2\tc@d.test\tAnn\t\\N\t2020\t2026-01-01"',
  table: 'users',
  constraint: 'users_birth_year_check',
});
const notNull = pgError({
  code: '23502',
  message: 'null value in column "display_name" of relation "_dbfleet_batch" violates not-null constraint',
  detail: 'Failing row contains (2, c@d.test, null, null, null, 2026-01-01 00:00:00+00).',
  where: 'COPY _dbfleet_batch, line 1: "2\tc@d.test\t\\N\t\\N\t\\N\t2026-01-01"',
  table: '_dbfleet_batch',
  column: 'display_name',
});
const foreignKey = pgError({
  code: '23503',
  message: 'insert or update on table "playlists" violates foreign key constraint "playlists_user_id_fkey"',
  detail: 'Key (user_id)=(99) is not present in table "users".',
  table: 'playlists',
  constraint: 'playlists_user_id_fkey',
});

describe('rowRefusal', () => {
  test('data exceptions and integrity violations are a row’s fault', () => {
    for (const err of [outOfRange, duplicate, check, notNull, foreignKey])
      expect(rowRefusal(err, columns)).toBe(err);
  });

  test('anything else is not: a missing column or table, a connection error, a plain Error', () => {
    expect(rowRefusal(pgError({ code: '42703', message: 'column "x" does not exist' }), columns)).toBe(
      undefined,
    );
    expect(rowRefusal(pgError({ code: '42P01', message: 'relation "t" does not exist' }), columns)).toBe(
      undefined,
    );
    expect(rowRefusal(pgError({ code: '08006', message: 'connection failure' }), columns)).toBe(undefined);
    expect(rowRefusal(Object.assign(new Error('x'), { code: '23505' }), columns)).toBe(undefined);
    expect(rowRefusal(new Error('Connection terminated'), columns)).toBe(undefined);
  });

  test('a NOT NULL column the load does not write fails every row alike: not a row’s fault', () => {
    expect(rowRefusal(notNull, ['id', 'email'])).toBe(undefined);
  });
});

describe('copyContext', () => {
  test('reads the line, and the column only when it is one of the columns written', () => {
    expect(copyContext(outOfRange, 'users', columns)).toEqual({ line: 2, column: 'created_at' });
    expect(copyContext(outOfRange, 'users', ['id'])).toEqual({ line: 2 });
    expect(copyContext(check, 'users', columns)).toEqual({ line: 7 });
    expect(copyContext(notNull, '_dbfleet_batch', columns)).toEqual({ line: 1 });
  });

  test('another relation’s COPY, a nested context or no context give nothing', () => {
    expect(copyContext(outOfRange, 'playlists', columns)).toEqual({});
    expect(copyContext(foreignKey, 'playlists', columns)).toEqual({});
    const nested = pgError({
      code: '22008',
      message: 'x',
      where: 'PL/pgSQL function f() line 3 at RAISE\nCOPY users, line 12, column created_at: "x"',
    });
    expect(copyContext(nested, 'users', columns)).toEqual({ line: 12, column: 'created_at' });
  });
});

describe('refusalReason', () => {
  test('names the SQLSTATE, the constraint and the column', () => {
    expect(refusalReason(outOfRange, copy)).toBe(
      'refused by PostgreSQL: date/time value out of range (column created_at, SQLSTATE 22008)',
    );
    expect(refusalReason(duplicate, copy)).toBe(
      'refused by PostgreSQL: duplicate key (constraint users_email_key, SQLSTATE 23505)',
    );
    expect(refusalReason(check, copy)).toBe(
      'refused by PostgreSQL: check constraint failed (constraint users_birth_year_check, SQLSTATE 23514)',
    );
    expect(refusalReason(notNull, { relation: '_dbfleet_batch', columns })).toBe(
      'refused by PostgreSQL: null in a required column (column display_name, SQLSTATE 23502)',
    );
    expect(refusalReason(foreignKey, { relation: 'playlists', columns: ['id', 'user_id', 'name'] })).toBe(
      'refused by PostgreSQL: foreign key not found (constraint playlists_user_id_fkey, SQLSTATE 23503)',
    );
    expect(refusalReason(pgError({ code: '22P99', message: 'x' }))).toBe(
      'refused by PostgreSQL: invalid data (SQLSTATE 22P99)',
    );
  });

  test('never quotes a value from the message, detail or context', () => {
    for (const err of [outOfRange, duplicate, check, notNull, foreignKey]) {
      const reason = refusalReason(err, copy);
      for (const value of ['0000-01-01', 'a@b.test', 'c@d.test', '2020', 'Ann', '99', '"'])
        expect(reason).not.toContain(value);
    }
  });
});
