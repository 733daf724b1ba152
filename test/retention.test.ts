/** Cleanup jobs on tables and collections: exactly the expired rows, in batches; dry runs change nothing. */
import { describe, expect } from 'vitest';
import { AuditDrain } from '../src/control/audit-drain.ts';
import { defineConfig } from '../src/config/define.ts';
import type { RetentionPolicy } from '../src/config/define.ts';
import { test } from './support/fixtures.ts';
import { createEvents, digests, events, expired } from './support/retention.ts';

const N = 3_000;
const policy = (store: 'postgres' | 'mongo', extra: Partial<RetentionPolicy> = {}): RetentionPolicy =>
  ({
    name: 'old_events',
    store,
    target: 'events',
    timeField: 'at',
    olderThanDays: 7,
    where: { kind: ['a', 'b'] },
    batch: { initialSize: 100, minSize: 50, maxSize: 400, pauseMs: 0 },
    ...extra,
  }) as RetentionPolicy;

describe.each(['postgres', 'mongo'] as const)('retention on %s', (store) => {
  test.override({ config: defineConfig({ retention: [policy(store)] }) });

  test('a dry run counts what a real run then deletes, and changes nothing; the real run takes exactly the expired rows', async ({
    tenant,
    spareTenant,
    client,
    startWorker,
  }) => {
    const rows = events(N);
    await createEvents(tenant, store, rows);
    const bystander = await spareTenant();
    await createEvents(bystander, store, rows);
    const before = await digests(tenant, store);
    const doomed = expired(rows, 7, ['a', 'b']);
    expect(doomed.length).toBeGreaterThan(1_000);
    startWorker();

    const dry = await (
      await client.enqueue('cleanup', { tenant: tenant.id, dryRun: true })
    ).waitForResult({
      timeoutMs: 60_000,
    });
    const times = doomed.map((r) => r.at!.getTime()).sort((a, b) => a - b);
    expect(dry.policies).toEqual([
      {
        name: 'old_events',
        store,
        dryRun: true,
        matched: doomed.length,
        deleted: 0,
        archived: 0,
        batches: 0,
        longestBatchMs: 0,
        oldest: expect.any(String),
        newest: expect.any(String),
        cutoff: expect.any(String),
      },
    ]);
    expect(Date.parse(dry.policies[0]!.oldest!)).toBe(times[0]);
    expect(Date.parse(dry.policies[0]!.newest!)).toBe(times.at(-1));
    expect(await digests(tenant, store)).toEqual(before);

    const real = await (
      await client.enqueue('cleanup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 60_000 });
    const [outcome] = real.policies;
    expect(outcome).toMatchObject({
      name: 'old_events',
      store,
      dryRun: false,
      matched: doomed.length,
      deleted: doomed.length,
      archived: 0,
    });
    expect(outcome!.batches).toBeGreaterThanOrEqual(Math.ceil(doomed.length / 400));
    expect(outcome!.longestBatchMs).toBeGreaterThan(0);

    // Exactly the expired rows of kinds a and b went; every other row is as it was.
    const after = await digests(tenant, store);
    const gone = new Set(doomed.map((r) => r.id));
    expect([...after.keys()]).toEqual(rows.map((r) => r.id).filter((id) => !gone.has(id)));
    for (const [id, digest] of after) expect(digest).toBe(before.get(id));
    expect(await digests(bystander, store)).toEqual(before);

    // Once more: nothing left to take.
    const again = await (
      await client.enqueue('cleanup', { tenant: tenant.id })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(again.policies[0]).toMatchObject({ matched: 0, deleted: 0 });
  });

  describe('a policy naming a table or field that is not there', () => {
    test.override({
      config: defineConfig({
        retention: [
          policy(store, { name: 'fine', target: 'other_events' }),
          policy(store, { name: 'missing', target: 'no_such_events' }),
        ],
      }),
    });
    test('fails at once, naming it, with nothing deleted by the policies before it', async ({
      tenant,
      deps,
      client,
      startWorker,
    }) => {
      await createEvents(tenant, store, events(200), 'other_events');
      const before = await digests(tenant, store, 'other_events');
      startWorker();
      const job = await client.enqueue('cleanup', { tenant: tenant.id });
      await expect(job.waitForResult({ timeoutMs: 60_000 })).rejects.toThrow(
        `${store} no_such_events (policy missing): no such ${store === 'postgres' ? 'table' : 'collection'}`,
      );
      expect(await digests(tenant, store, 'other_events')).toEqual(before);
      await deps.audit.flushed();
      await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();
      const audit = await deps.control.pool.query(
        `SELECT attempt, error_code FROM dbfleet.job_events WHERE prefix = $1 AND status = 'failed'`,
        [deps.prefix],
      );
      expect(audit.rows).toEqual([{ attempt: 1, error_code: 'policy_mismatch' }]);
    });
  });
});
