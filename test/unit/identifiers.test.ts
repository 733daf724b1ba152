import { describe, expect, it } from 'vitest';
import { quoteIdent, tenantNamespace } from '../../src/stores/identifiers.ts';
import { PermanentError } from '../../src/errors.ts';
import { defineConfig } from '../../src/config/define.ts';

describe('identifiers', () => {
  it('quotes plain identifiers', () => {
    expect(quoteIdent('users')).toBe('"users"');
    expect(quoteIdent('_dbfleet_load_checkpoints')).toBe('"_dbfleet_load_checkpoints"');
    expect(tenantNamespace('acme_2')).toBe('t_acme_2');
  });

  it.each(['users"; DROP TABLE users; --', 'a b', 'x.y', '', '1abc', 'a'.repeat(64), 'users\u0000'])(
    'refuses %j, as a permanent error',
    (name) => {
      expect(() => quoteIdent(name)).toThrow(PermanentError);
    },
  );

  it.each(['../other', 'Acme', 'acme;', 't'.repeat(41), 'a-b'])('refuses tenant id %j', (id) => {
    expect(() => tenantNamespace(id)).toThrow(/tenant id .* is not valid/);
  });
});

describe('config targets', () => {
  it('refuses a config naming a reserved or invalid table or collection for jobs to act on', () => {
    expect(() =>
      defineConfig({
        retention: [
          { name: 'r', store: 'postgres', target: '_dbfleet_migrations', timeField: 't', olderThanDays: 1 },
        ],
        personalData: [{ store: 'mongo', name: 'users; drop', subjectField: 'id', action: 'delete' }],
      }),
    ).toThrow(
      /personalData\[0\]\.name: "users; drop" is not an identifier[\s\S]*retention\[0\]\.target: is reserved/,
    );
    expect(() =>
      defineConfig({
        personalData: [{ store: 'mongo', name: 'sessions', subjectField: 'userId', action: 'delete' }],
      }),
    ).not.toThrow();
  });
});
