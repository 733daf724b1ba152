/** The producer client and the worker runtime, with stand-in handlers on real Redis and PostgreSQL. */
import { describe, expect, vi } from 'vitest';
import { catalog, type JobPolicy } from '../queues/index.ts';
import { PermanentError, TransientError } from '../src/errors.ts';
import type { Handler } from '../src/runtime/handler.ts';
import { servedQueues } from '../src/runtime/worker.ts';
import { handlers } from '../workers/index.ts';
import { test } from './support/fixtures.ts';

const payload = (tenant: string) => ({
  tenant,
  target: { store: 'mongo' as const, name: 'sessions' },
  source: { type: 'inline' as const, rows: [] },
});

const fakeResult = {
  read: 0,
  loaded: 0,
  rejected: 0,
  sampleRejections: [],
  batches: 0,
  resumedFrom: 0,
  rowsPerSecond: 0,
};

describe('producer client', () => {
  test('the same idempotency key gives the same job', async ({ client, tenant }) => {
    const a = await client.enqueue('load-fixtures', payload(tenant.id), {
      idempotencyKey: 'nightly-2026-11-21',
    });
    const b = await client.enqueue('load-fixtures', payload(tenant.id), {
      idempotencyKey: 'nightly-2026-11-21',
    });
    const c = await client.enqueue('load-fixtures', payload(tenant.id), {
      idempotencyKey: 'nightly-2026-11-22',
    });
    expect(b.id).toBe(a.id);
    expect(c.id).not.toBe(a.id);
    expect((await client.queue('load-fixtures').getJobCounts('waiting')).waiting).toBe(2);
  });

  test('bulk enqueue validates every payload before adding any', async ({ client, tenant, deps }) => {
    await expect(
      client.enqueueBulk('load-fixtures', [
        { payload: payload(tenant.id) },
        { payload: { ...payload(tenant.id), tenant: 'Bad!' } },
      ]),
    ).rejects.toThrow(/tenant: must be a tenant id/);
    expect(await deps.redis.keys(`${deps.prefix}:*`)).toEqual([]);
    const jobs = await client.enqueueBulk('load-fixtures', [
      { payload: payload(tenant.id) },
      { payload: payload(tenant.id) },
    ]);
    expect(jobs).toHaveLength(2);
  });

  test('progress events reach the producer, and the result comes back', async ({
    client,
    tenant,
    startWorker,
  }) => {
    const reporting: Handler<'load-fixtures'> = async (_p, ctx) => {
      for (const step of [1, 2, 3]) await ctx.progress({ step });
      return { ...fakeResult, read: 3 };
    };
    const job = await client.enqueue('load-fixtures', payload(tenant.id), { requestedBy: 'tests' });
    const seen: unknown[] = [];
    await job.onProgress((p) => seen.push(p));
    startWorker({ handlers: { ...handlers, 'load-fixtures': reporting } });
    expect(await job.waitForResult({ timeoutMs: 10_000 })).toMatchObject({ read: 3 });
    expect(seen).toEqual([{ step: 1 }, { step: 2 }, { step: 3 }]);
  });
});

describe('worker runtime', () => {
  test('a job past its timeout is signalled, retried as transient, then failed with the reason; the in-flight gauge counts it per tenant meanwhile', async ({
    client,
    tenant,
    startWorker,
  }) => {
    // The policy is data: shorten this test's copy (this file runs in its own process).
    const contract = catalog['load-fixtures'] as { policy: JobPolicy };
    const original = contract.policy;
    contract.policy = { ...original, timeoutMs: 300, attempts: 2, backoff: { delayMs: 50, jitter: 0 } };
    try {
      let started = 0;
      const slow: Handler<'load-fixtures'> = async (_payload, ctx) => {
        started++;
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
        ctx.throwIfInterrupted();
        return fakeResult;
      };
      const worker = startWorker({ handlers: { ...handlers, 'load-fixtures': slow } });
      const job = await client.enqueue('load-fixtures', payload(tenant.id));
      const inFlight = async () =>
        (await worker.metrics.registry.getSingleMetric('dbfleet_jobs_in_flight')!.get()).values.find(
          (v) => v.labels.tenant === tenant.id,
        )?.value;
      await vi.waitFor(async () => expect(await inFlight()).toBe(1));
      await expect(job.waitForResult({ timeoutMs: 10_000 })).rejects.toThrow(
        '[interrupted] interrupted: timed out',
      );
      expect(started).toBe(2);
      expect((await client.queue('load-fixtures').getJob(job.id))!.attemptsMade).toBe(2);
      expect(await inFlight()).toBe(0);
    } finally {
      contract.policy = original;
    }
  });

  test('a transient fault is retried with backoff until it succeeds', async ({
    client,
    tenant,
    startWorker,
    deps,
  }) => {
    const startedAt: number[] = [];
    const flaky: Handler<'load-fixtures'> = async (_p, ctx) => {
      startedAt.push(Date.now());
      if (ctx.job.attempt < 3)
        throw new TransientError('connection', `simulated outage on attempt ${ctx.job.attempt}`);
      return fakeResult;
    };
    startWorker({ handlers: { ...handlers, 'load-fixtures': flaky } });
    const job = await client.enqueue('load-fixtures', payload(tenant.id), { requestedBy: 'tests' });
    await job.waitForResult({ timeoutMs: 60_000 });
    expect(startedAt).toHaveLength(3);
    // Exponential: about 2 s then about 4 s, each spread by ±50% jitter.
    expect(startedAt[1]! - startedAt[0]!).toBeGreaterThanOrEqual(1_000);
    expect(startedAt[2]! - startedAt[1]!).toBeGreaterThanOrEqual(2_000);
    // The audit log is copied from its Redis outbox shortly after the job finishes.
    await vi.waitFor(async () => {
      const audit = await deps.control.jobRun(deps.prefix, 'load-fixtures', job.id);
      expect(audit).toMatchObject({ status: 'completed', attempts: 3, requested_by: 'tests' });
      expect(audit!.payload_digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    });
  });

  test('a permanent fault fails at once with its reason', async ({ client, tenant, startWorker }) => {
    let calls = 0;
    const broken: Handler<'load-fixtures'> = async () => {
      calls++;
      throw new PermanentError('check_violation', 'row 12 violates check "positive_amount"');
    };
    startWorker({ handlers: { ...handlers, 'load-fixtures': broken } });
    const job = await client.enqueue('load-fixtures', payload(tenant.id));
    await expect(job.waitForResult({ timeoutMs: 10_000 })).rejects.toThrow(
      '[check_violation] row 12 violates check',
    );
    expect(calls).toBe(1);
  });

  test('a worker serves only queues that have a handler, and names the ones it cannot', () => {
    expect(servedQueues(handlers)).toEqual([
      'load-fixtures',
      'migrate',
      'backup',
      'restore',
      'cleanup',
      'erase',
      'export-subject',
    ]);
    expect(() => servedQueues(handlers, ['validate'])).toThrow('queue validate has no handler yet');
    expect(() => servedQueues(handlers, ['nope'])).toThrow('unknown queue "nope"');
  });
});
