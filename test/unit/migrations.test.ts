import { describe, expect, test } from 'vitest';
import { checksumOf, parseSqlMigration } from '../../src/migrations/files.ts';
import { findDrift, planDown, planUp } from '../../src/migrations/plan.ts';
import { splitStatements } from '../../src/migrations/sql-statements.ts';
import type { AppliedMigration, Migration } from '../../src/migrations/types.ts';

const m = (version: string, text = version, down = true): Migration<never> => ({
  version,
  name: `m${version}`,
  file: `${version.padStart(4, '0')}_m${version}.sql`,
  checksum: checksumOf(text),
  transaction: true,
  up: async () => undefined,
  down: down ? async () => undefined : undefined,
});
const applied = (x: Migration<never>): AppliedMigration => ({
  version: x.version,
  name: x.name,
  checksum: x.checksum,
  appliedAt: new Date(),
  durationMs: 1,
  jobId: null,
  requestedBy: null,
  baseline: false,
});

describe('plan', () => {
  const all = [m('1'), m('2'), m('10')];
  test('up: pending in numeric order, bounded by --to', () => {
    expect(planUp(all, [applied(all[0]!)]).map((x) => x.version)).toEqual(['2', '10']);
    expect(planUp(all, [], '2').map((x) => x.version)).toEqual(['1', '2']);
  });
  test('down: newest first, and refused before anything runs when one has no down', () => {
    expect(planDown(all, all.map(applied), '1').map((x) => x.version)).toEqual(['10', '2']);
    const noDown = [m('1'), m('2', '2', false), m('3')];
    expect(() => planDown(noDown, noDown.map(applied), '1')).toThrow('no down migration in 0002_m2.sql');
  });
  test('drift: an edited file and a missing one, each named', () => {
    const history = [applied(m('1', 'old text')), applied(m('5'))];
    expect(findDrift(all, history)).toEqual([
      { version: '1', file: '0001_m1.sql', reason: 'edited' },
      { version: '5', file: '5_m5', reason: 'missing' },
    ]);
  });
  test('checksums ignore line-ending style only', () => {
    expect(checksumOf('a\r\nb')).toBe(checksumOf('a\nb'));
    expect(checksumOf('a\nb ')).not.toBe(checksumOf('a\nb'));
  });
});

describe('SQL files', () => {
  test('up and down sections, and the no-transaction flag', () => {
    const parsed = parseSqlMigration(
      'x.sql',
      '-- migrate:no-transaction\n-- migrate:up\nCREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate:down\nDROP INDEX i;\n',
    );
    expect(parsed.transaction).toBe(false);
    expect(parsed.up.trim()).toBe('CREATE INDEX CONCURRENTLY i ON t (a);');
    expect(parsed.down?.trim()).toBe('DROP INDEX i;');
    expect(parseSqlMigration('y.sql', 'CREATE TABLE t (a int);')).toMatchObject({
      down: undefined,
      transaction: true,
    });
  });
  test('statements split at top-level semicolons only', () => {
    const sql = `CREATE TABLE "a;b" (x text DEFAULT 'it''s; fine'); -- a comment; here
      CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;
      /* block; comment */ SELECT 2;`;
    expect(splitStatements(sql)).toEqual([
      `CREATE TABLE "a;b" (x text DEFAULT 'it''s; fine')`,
      `-- a comment; here\n      CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql`,
      `/* block; comment */ SELECT 2`,
    ]);
  });
});
