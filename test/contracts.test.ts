/** Every job type rejects a bad payload at enqueue, naming the field, before anything reaches Redis. */
import { describe, expect } from 'vitest';
import { ValidationError } from '../src/errors.ts';
import { jobNames, type JobName } from '../queues/index.ts';
import { test } from './support/fixtures.ts';

const invalid: Record<JobName, { payload: unknown; field: RegExp }> = {
  'load-fixtures': {
    payload: {
      tenant: 'acme',
      target: { store: 'postgres', name: 'users; drop table users' },
      source: { type: 'inline', rows: [] },
      schema: 'users',
    },
    field: /target\.name: must be an identifier/,
  },
  migrate: { payload: { tenant: 'acme', direction: 'sideways' }, field: /direction:/ },
  backup: { payload: { tenant: 'Acme Corp' }, field: /tenant: must be a tenant id/ },
  restore: {
    payload: { tenant: 'acme', backupId: '../../etc/passwd' },
    field: /backupId: must be a backup id/,
  },
  cleanup: { payload: { tenant: 'acme', dryRun: 'yes' }, field: /dryRun:/ },
  validate: { payload: { tenant: 'acme', rules: [] }, field: /rules:/ },
  erase: { payload: { tenant: 'acme', subject: {} }, field: /subject\.id:/ },
};

describe('contracts', () => {
  test('covers every job type', () => {
    expect(Object.keys(invalid).sort()).toEqual([...jobNames].sort());
  });

  test.for(jobNames)(
    '%s: an invalid payload is refused at enqueue, naming the field; Redis untouched',
    async (name, { client, deps }) => {
      const { payload, field } = invalid[name];
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- deliberately wrong payloads
      const attempt = client.enqueue(name, payload as any);
      await expect(attempt).rejects.toThrow(ValidationError);
      await expect(attempt).rejects.toThrow(field);
      expect(await deps.redis.keys(`${deps.prefix}:*`)).toEqual([]);
    },
  );

  test('a cross-field rule: upsert needs a key', async ({ client }) => {
    await expect(
      client.enqueue('load-fixtures', {
        tenant: 'acme',
        target: { store: 'mongo', name: 'sessions' },
        source: { type: 'inline', rows: [] },
        mode: 'upsert',
      }),
    ).rejects.toThrow(/key: is required when mode is upsert/);
  });
});
