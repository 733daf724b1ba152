/**
 * kill -9 of the worker in the middle of an erasure: the retried job resumes from its checkpoint and
 * finishes, the counts add up to what the subject had, and the verify pass finds nothing left.
 */
import type { Job } from 'bullmq';
import { expect } from 'vitest';
import { ErasureLedger } from '../../src/erase/ledger.ts';
import { fillDemo } from '../support/erasure.ts';
import { eventually, test } from '../support/fixtures.ts';

const FAST_TAKEOVER = { DBFLEET_LOCK_DURATION_MS: '2000' };
const progressOf = (job: Job | undefined) => (job?.progress ?? {}) as { phase?: string; locations?: number };

test(
  'kill -9 mid-erase: the next worker finishes it, counts add up, verified',
  { timeout: 300_000 },
  async ({ deps, client, tenant, spawnWorker }) => {
    const ids = await fillDemo(tenant, 5);
    const subject = ids[2]!;
    // A heavy subject: enough sessions and events that the kill lands inside the MongoDB work.
    const SESSIONS = 60_000;
    const EVENTS = 120_000;
    for (let i = 0; i < SESSIONS; i += 10_000)
      await tenant.mongo
        .collection('sessions')
        .insertMany(
          Array.from({ length: 10_000 }, (_, k) => ({ _id: `heavy-s-${i + k}` as never, userId: subject })),
        );
    for (let i = 0; i < EVENTS; i += 10_000)
      await tenant.mongo
        .collection('listening_events')
        .insertMany(
          Array.from({ length: 10_000 }, (_, k) => ({ _id: `heavy-e-${i + k}` as never, userId: subject })),
        );
    // Pseudonyms are negative: others' events are those with a positive id not the subject's.
    const othersFilter = { userId: { $gt: 0, $ne: subject } };
    const others = await tenant.mongo.collection('listening_events').countDocuments(othersFilter);
    const queue = client.queue('erase');

    const first = await spawnWorker({ env: FAST_TAKEOVER });
    const job = await client.enqueue('erase', { tenant: tenant.id, subject: { id: String(subject) } });
    // PostgreSQL is committed and the collections are under way.
    await eventually(async () => progressOf(await queue.getJob(job.id)).phase === 'postgres', 60_000, 5);
    first.proc.kill('SIGKILL');
    await first.exited;
    const ledger = new ErasureLedger(deps.control.pool, deps.prefix);
    expect((await ledger.list({ tenant: tenant.id })).map((e) => e.state)).toEqual(['running']);
    // Part of it done, part not: the subject's sessions or events are still there.
    const left =
      (await tenant.mongo.collection('sessions').countDocuments({ userId: subject })) +
      (await tenant.mongo.collection('listening_events').countDocuments({ userId: subject }));
    expect(left).toBeGreaterThan(0);

    await spawnWorker({ env: FAST_TAKEOVER });
    const result = await job.waitForResult({ timeoutMs: 240_000 });
    expect(result).toMatchObject({
      verified: true,
      deleted: 1 + 2 + 6 + 2 + 2 + SESSIONS,
      anonymised: 5 + EVENTS + 1,
    });
    expect(result.locations.find((l) => l.name === 'sessions')).toMatchObject({
      count: 2 + SESSIONS,
      remaining: 0,
    });
    expect(result.locations.find((l) => l.name === 'listening_events')).toMatchObject({
      count: 5 + EVENTS,
      remaining: 0,
    });
    expect(await tenant.mongo.collection('sessions').countDocuments({ userId: subject })).toBe(0);
    expect(await tenant.mongo.collection('listening_events').countDocuments({ userId: subject })).toBe(0);
    expect(await tenant.mongo.collection('listening_events').countDocuments(othersFilter)).toBe(others);
    const [row] = await ledger.list({ tenant: tenant.id });
    expect(row).toMatchObject({ state: 'complete', verified: true, deleted: String(result.deleted) });
  },
);
