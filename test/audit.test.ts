/**
 * The audit log's path: jobs append to a Redis outbox before they are acknowledged; drainers in every
 * worker copy it into dbfleet.job_events exactly once, whatever fails in between.
 */
import pg from 'pg';
import { describe, expect, vi } from 'vitest';
import { AuditDrain } from '../src/control/audit-drain.ts';
import { auditStreamKey } from '../src/control/audit-outbox.ts';
import { PermanentError } from '../src/errors.ts';
import type { Handler } from '../src/runtime/handler.ts';
import { handlers } from '../workers/index.ts';
import { test } from './support/fixtures.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';

const payload = (tenant: string, n: number) => ({
  tenant,
  target: { store: 'mongo' as const, name: 'sessions' },
  source: { type: 'inline' as const, rows: [{ n }] },
});
const result = {
  read: 1,
  loaded: 1,
  rejected: 0,
  sampleRejections: [],
  batches: 1,
  resumedFrom: 0,
  rowsPerSecond: 0,
};

async function events(deps: FleetDeps) {
  const { rows } = await deps.control.pool.query<{
    job_id: string;
    status: string;
    error_message: string | null;
  }>('SELECT job_id, status, error_message FROM dbfleet.job_events WHERE prefix = $1 ORDER BY id', [
    deps.prefix,
  ]);
  return rows;
}

const auditEvent = (deps: FleetDeps, jobId: string) => ({
  prefix: deps.prefix,
  queue: 'load-fixtures',
  jobId,
  tenant: 'acme',
  requestedBy: undefined,
  payloadDigest: 'sha256:00',
  status: 'completed' as const,
  at: Date.now(),
  attempt: 1,
  enqueuedAt: Date.now(),
  startedAt: Date.now(),
});

describe('audit log', () => {
  test('two workers, 300 jobs: one final event per job, stored exactly once, text kept intact', async ({
    deps,
    client,
    tenant,
    startWorker,
  }) => {
    const message = 'tab\there, newline\nthere, backslash \\ and é';
    const handler: Handler<'load-fixtures'> = async (p) => {
      const n = (p.source as { rows: { n: number }[] }).rows[0]!.n;
      if (n % 10 === 0) throw new PermanentError('invalid_source', message);
      return result;
    };
    const options = { handlers: { ...handlers, 'load-fixtures': handler }, concurrency: 8 };
    startWorker(options);
    startWorker(options);
    await client.enqueueBulk(
      'load-fixtures',
      Array.from({ length: 300 }, (_, n) => ({ payload: payload(tenant.id, n) })),
    );
    const queue = client.queue('load-fixtures');
    await vi.waitFor(
      async () => {
        const counts = await queue.getJobCounts('completed', 'failed');
        expect(counts).toEqual({ completed: 270, failed: 30 });
      },
      { timeout: 30_000, interval: 100 },
    );

    await vi.waitFor(async () => expect(await events(deps)).toHaveLength(300), { timeout: 10_000 });
    const rows = await events(deps);
    expect(new Set(rows.map((r) => r.job_id)).size).toBe(300);
    expect(rows.filter((r) => r.status === 'completed')).toHaveLength(270);
    const failed = rows.filter((r) => r.status === 'failed');
    expect(failed).toHaveLength(30);
    expect(failed[0]!.error_message).toBe(message);
    expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBe(0);
  });

  test('a drainer that dies between its commit and its trim repeats nothing', async ({ deps }) => {
    for (let i = 0; i < 10; i++) await deps.audit.record(auditEvent(deps, `job${i}`));
    await deps.audit.flushed(); // the drainers below read on other connections
    // The Redis client this drainer gets fails the trim, as if the process died right after COMMIT.
    const redis = deps.redis.duplicate();
    const failingTrim = new Proxy(redis, {
      get: (target, key) =>
        key === 'xtrim' ? () => Promise.reject(new Error('killed')) : Reflect.get(target, key, target),
    });
    try {
      const dying = new AuditDrain(failingTrim, deps.control.pool, deps.prefix, deps.log);
      await expect(dying.drainOnce()).rejects.toThrow('killed');
      expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBeGreaterThan(0);

      const next = new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log);
      await next.drainAll();
      expect((await events(deps)).map((r) => r.job_id)).toEqual(
        Array.from({ length: 10 }, (_, i) => `job${i}`),
      );
      expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  test('text PostgreSQL cannot hold (a NUL) is replaced, and the events after it are copied too', async ({
    deps,
  }) => {
    await deps.audit.record({
      ...auditEvent(deps, 'nul'),
      status: 'failed',
      requestedBy: 'ops\0me',
      errorCode: 'bad\0code',
      errorMessage: 'driver said \0\0',
    });
    await deps.audit.record(auditEvent(deps, 'after'));
    await deps.audit.flushed();
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();
    const { rows } = await deps.control.pool.query(
      'SELECT job_id, requested_by, error_code, error_message FROM dbfleet.job_events WHERE prefix = $1 ORDER BY id',
      [deps.prefix],
    );
    expect(rows).toEqual([
      {
        job_id: 'nul',
        requested_by: 'ops\uFFFDme',
        error_code: 'bad\uFFFDcode',
        error_message: 'driver said \uFFFD\uFFFD',
      },
      { job_id: 'after', requested_by: null, error_code: null, error_message: null },
    ]);
  });

  test('events a worker of the version before appended (ISO times) are converted, in stream order', async ({
    deps,
  }) => {
    // What a version-3 worker appended during a rolling upgrade: its line format, field 'e'.
    const v3 = (jobId: string, status: string) =>
      [
        deps.prefix,
        'load-fixtures',
        jobId,
        'acme',
        'ops',
        'sha256:00',
        status,
        '1',
        '2026-11-21T10:00:00.001Z',
        '2026-11-21T10:00:00.250Z',
        status === 'completed' ? '2026-11-21T10:00:01.500Z' : '\\N',
        '1250',
        '{"rows":2}',
        '\\N',
        '\\N',
        '2026-11-21T10:00:01.500Z',
      ].join('\t') + '\n';
    const key = auditStreamKey(deps.prefix);
    await deps.redis.xadd(key, '*', 'e', v3('old1', 'completed'));
    await deps.audit.record(auditEvent(deps, 'new1'));
    await deps.audit.flushed();
    await deps.redis.xadd(key, '*', 'e', v3('old2', 'retrying') + v3('old3', 'completed'));
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();

    const { rows } = await deps.control.pool.query(
      `SELECT job_id, status, requested_by, started_at, finished_at, duration_ms, result_summary, recorded_at
       FROM dbfleet.job_events WHERE prefix = $1 ORDER BY id`,
      [deps.prefix],
    );
    expect(rows.map((r) => r.job_id)).toEqual(['old1', 'new1', 'old2', 'old3']);
    expect(rows[0]).toEqual({
      job_id: 'old1',
      status: 'completed',
      requested_by: 'ops',
      started_at: new Date('2026-11-21T10:00:00.250Z'),
      finished_at: new Date('2026-11-21T10:00:01.500Z'),
      duration_ms: 1250,
      result_summary: { rows: 2 },
      recorded_at: new Date('2026-11-21T10:00:01.500Z'),
    });
    expect(rows[2]).toMatchObject({ status: 'retrying', finished_at: null });
    expect(await deps.redis.xlen(key)).toBe(0);
  });

  test('events wait in Redis while the control database is unreachable', async ({ deps }) => {
    for (let i = 0; i < 5; i++) await deps.audit.record(auditEvent(deps, `job${i}`));
    const unreachable = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' });
    try {
      const drain = new AuditDrain(deps.redis, unreachable, deps.prefix, deps.log);
      await expect(drain.drainOnce()).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await unreachable.end();
    }
    expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBe(5);
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();
    expect(await events(deps)).toHaveLength(5);
  });

  test('an append Redis refuses is kept and sent again; until then jobs are not acknowledged', async ({
    deps,
    client,
    tenant,
    startWorker,
  }) => {
    // A key of the wrong type makes Redis refuse every append but not the acknowledgement after it.
    const key = auditStreamKey(deps.prefix);
    await deps.redis.set(key, 'not a stream');
    startWorker({ handlers: { ...handlers, 'load-fixtures': async () => result } });
    const first = await client.enqueue('load-fixtures', payload(tenant.id, 1));
    await first.waitForResult({ timeoutMs: 10_000 }); // its event went out before its ack: kept
    await deps.audit.flushed(); // the refusal may be read after the completion is announced
    expect(deps.audit.refusedEvents).toBe(1);

    const second = await client.enqueue('load-fixtures', payload(tenant.id, 2));
    const queue = client.queue('load-fixtures');
    await vi.waitFor(async () => expect((await queue.getJob(second.id))!.attemptsMade).toBe(1), {
      timeout: 10_000,
    });
    expect(await (await queue.getJob(second.id))!.getState()).not.toBe('completed');
    expect((await queue.getJob(second.id))!.failedReason).toMatch(/^\[audit_unavailable\]/);

    await deps.redis.del(key);
    await second.waitForResult({ timeoutMs: 30_000 });
    expect(deps.audit.refusedEvents).toBe(0);
    await vi.waitFor(async () => {
      expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', first.id)).toMatchObject({
        status: 'completed',
        attempts: 1,
      });
      expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', second.id)).toMatchObject({
        status: 'completed',
        attempts: 2,
      });
    });
  });
});
