/** Every job type rejects a bad payload at enqueue, naming the field, before anything reaches Redis. */
import { describe, expect, vi } from 'vitest';
import { parsePayload } from '../src/jobs/envelope.ts';
import { ValidationError } from '../src/errors.ts';
import { jobNames, type JobName, type PayloadInput } from '../queues/index.ts';
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
  'export-subject': {
    payload: { tenant: 'acme', subject: { id: 'u1' }, expiresInSeconds: 8 * 24 * 3600 },
    field: /expiresInSeconds:/,
  },
};

/** A valid payload of each type: the base the strictness tests add to. */
const valid: { [N in JobName]: PayloadInput<N> } = {
  'load-fixtures': {
    tenant: 'acme',
    target: { store: 'postgres', name: 'users' },
    source: { type: 'inline', rows: [] },
    schema: 'users',
  },
  migrate: { tenant: 'acme' },
  backup: { tenant: 'acme' },
  restore: { tenant: 'acme', backupId: 'b1' },
  cleanup: { tenant: 'acme' },
  validate: { tenant: 'acme' },
  erase: { tenant: 'acme', subject: { id: 'u1' } },
  'export-subject': { tenant: 'acme', subject: { id: 'u1' } },
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

  test.for(jobNames)(
    '%s: an unknown field is refused at enqueue and in the worker, naming it',
    async (name, { client, deps }) => {
      // Misspelt `dryRun` (the field a user most needs honoured) at the top and a stray nested field.
      const payload = { ...valid[name], dryrun: true };
      // eslint-disable-next-line @typescript-eslint/no-explicit-any -- deliberately wrong payloads
      await expect(client.enqueue(name, payload as any)).rejects.toThrow(
        /\(root\): Unrecognized key: "dryrun"/,
      );
      expect(await deps.redis.keys(`${deps.prefix}:*`)).toEqual([]);
      expect(() => parsePayload(name, payload)).toThrow(ValidationError);
    },
  );

  test('nested objects are strict too', async ({ client }) => {
    await expect(
      client.enqueue('load-fixtures', {
        ...valid['load-fixtures'],
        target: { store: 'postgres', name: 'users', schema: 'public' },
      } as never),
    ).rejects.toThrow(/target: Unrecognized key: "schema"/);
    await expect(
      client.enqueue('erase', { tenant: 'acme', subject: { id: 'u1', email: 'x' } } as never),
    ).rejects.toThrow(/subject: Unrecognized key: "email"/);
  });

  test('a job already queued with an unknown field fails in the worker without running, not retried', async ({
    client,
    tenant,
    startWorker,
  }) => {
    // As a producer that skips validation (or a newer one) would leave it in Redis.
    const queue = client.queue('migrate');
    const job = await queue.add(
      'migrate@x',
      { v: 1, payload: { tenant: tenant.id, direction: 'down', to: '0', dryrun: true } },
      { attempts: 3 },
    );
    startWorker();
    await vi.waitFor(async () => expect(await queue.getJobState(job.id!)).toBe('failed'), {
      timeout: 10_000,
    });
    const failed = await queue.getJob(job.id!);
    expect(failed!.attemptsMade).toBe(1);
    expect(failed!.failedReason).toBe(
      '[invalid_payload] migrate payload is invalid: (root): Unrecognized key: "dryrun"',
    );
    // Nothing was reverted: both stores are still at the latest version.
    const tables = await tenant.pg.withClient(
      async (c) =>
        (
          await c.query(`SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1`, [
            tenant.pg.schema,
          ])
        ).rows[0].n,
    );
    expect(tables).toBeGreaterThan(2);
  });

  test('a job whose envelope is forged or malformed fails in the worker without running', async ({
    client,
    tenant,
    startWorker,
  }) => {
    const queue = client.queue('migrate');
    const payload = { tenant: tenant.id, action: 'status' };
    const forged = [
      [{ v: 1, payload, digest: 'sha256:forged' }, 'digest: must be sha256:<64 hex digits>'],
      [{ v: 1, payload, requestedBy: { name: 'x' } }, 'requestedBy: must be text of at most 200 characters'],
      [{ v: 1, payload, runId: 'not-a-uuid' }, 'runId: must be a UUID'],
      [{ v: 1, payload, admin: true }, '(root): Unrecognized key: "admin"'],
      [{ v: 2 }, 'v: must be 1; payload: is required'],
      ['text', '(root): not an object'],
    ] as const;
    const jobs = await Promise.all(forged.map(([data]) => queue.add('migrate@x', data, { attempts: 3 })));
    startWorker();
    for (const [i, job] of jobs.entries()) {
      await vi.waitFor(async () => {
        const failed = await queue.getJob(job.id!);
        expect(failed!.failedReason).toBe(`[invalid_payload] job envelope is invalid: ${forged[i]![1]}`);
        expect(failed!.attemptsMade).toBe(1);
      });
    }
  });

  test('enqueue options are validated: unknown, out of range, wrong type', async ({ client, deps }) => {
    const p = valid.backup;
    const cases: [unknown, RegExp][] = [
      [{ priority: 0 }, /priority: Too small/],
      [{ priority: 2_097_153 }, /priority: Too big/],
      [{ priority: 1.5 }, /priority: Invalid input: expected int/],
      [{ delayMs: -1 }, /delayMs: Too small/],
      [{ requestedBy: 'ops\nforged line' }, /requestedBy: must not contain control characters/],
      [{ requestedBy: 'x'.repeat(201) }, /requestedBy: Too big/],
      [{ idempotencyKey: '' }, /idempotencyKey: Too small/],
      [{ prority: 1 }, /Unrecognized key: "prority"/],
    ];
    for (const [options, message] of cases) {
      const attempt = client.enqueue('backup', p, options as never);
      await expect(attempt, JSON.stringify(options)).rejects.toThrow(ValidationError);
      await expect(attempt).rejects.toThrow(message);
    }
    expect(await deps.redis.keys(`${deps.prefix}:*`)).toEqual([]);
  });

  test('deep nesting is a ValidationError naming where, and the payload size is bounded', async ({
    client,
    deps,
  }) => {
    let deep: unknown = 'x';
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    const nested = client.enqueue('load-fixtures', {
      ...valid['load-fixtures'],
      source: { type: 'inline', rows: [deep] },
    });
    await expect(nested).rejects.toThrow(ValidationError);
    await expect(nested).rejects.toThrow(/source\.rows\.0\.a\.a(\.a)*: nested deeper than 64 levels/);

    const big = client.enqueue('load-fixtures', {
      ...valid['load-fixtures'],
      source: { type: 'inline', rows: Array.from({ length: 10_000 }, () => ({ blob: 'x'.repeat(500) })) },
    });
    await expect(big).rejects.toThrow(/\(root\): \d+ bytes of JSON, more than the 4194304 allowed/);
    expect(await deps.redis.keys(`${deps.prefix}:*`)).toEqual([]);
  });

  test('reserved names are refused as targets, in any letter case', async ({ client }) => {
    for (const name of [
      '_dbfleet_migrations',
      '_DBFLEET_load_checkpoints',
      '_dbfleet_locks',
      '_dbfleet_meta',
    ]) {
      await expect(
        client.enqueue('load-fixtures', {
          ...valid['load-fixtures'],
          target: { store: 'postgres', name },
        }),
      ).rejects.toThrow(/target\.name: is reserved for the fleet's own records/);
    }
  });

  test('a backup id is never a path', async ({ client }) => {
    for (const backupId of ['..', '...', 'a..b', '.hidden', '-x']) {
      await expect(client.enqueue('restore', { tenant: 'acme', backupId })).rejects.toThrow(
        /backupId: must be a backup id/,
      );
    }
  });

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
