/**
 * kill -9 of the worker in the middle of a cleanup: the retried job resumes from its checkpoint (it
 * does not walk the table again from the start) and the counts add up exactly to the expired rows.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { eventually, test } from '../support/fixtures.ts';
import { createEvents, digests, events, expired, indexTime } from '../support/retention.ts';

const FAST_TAKEOVER = { DBFLEET_LOCK_DURATION_MS: '2000' };
const N = 60_000;

describe.each([
  { store: 'postgres', walk: 'key' },
  { store: 'mongo', walk: 'key' },
  { store: 'mongo', walk: 'time' },
] as const)('kill -9 mid-cleanup on $store, walked by $walk', ({ store, walk }) => {
  test(
    'the next worker resumes from the checkpoint; matched and deleted are exactly the expired rows',
    { timeout: 300_000 },
    async ({ tmp, tenant, client, spawnWorker }) => {
      const rows = events(N);
      await createEvents(tenant, store, rows);
      if (walk === 'time') await indexTime(tenant);
      const before = await digests(tenant, store);
      const doomed = expired(rows, 7, ['a', 'b', 'c']);
      // Small batches with a rest between them: the walk takes long enough to be killed inside it.
      const config = path.join(tmp, 'cleanup.config.ts');
      await writeFile(
        config,
        `export default ${JSON.stringify({
          retention: [
            {
              name: 'old_events',
              store,
              target: 'events',
              timeField: 'at',
              olderThanDays: 7,
              batch: { initialSize: 200, minSize: 200, maxSize: 200, pauseMs: 20 },
            },
          ],
        })};\n`,
      );
      const env = { ...FAST_TAKEOVER, DBFLEET_CONFIG: config };
      const remaining = async () =>
        store === 'postgres'
          ? Number(
              (await tenant.pg.withClient((c) => c.query<{ n: string }>('SELECT count(*) AS n FROM events')))
                .rows[0]!.n,
            )
          : await tenant.mongo.collection('events').countDocuments();

      const first = await spawnWorker({ env });
      const job = await client.enqueue('cleanup', { tenant: tenant.id });
      // A third of the way in.
      await eventually(async () => N - (await remaining()) > doomed.length / 3, 120_000, 20);
      first.proc.kill('SIGKILL');
      await first.exited;
      const deletedBeforeKill = N - (await remaining());
      expect(deletedBeforeKill).toBeLessThan(doomed.length);

      await spawnWorker({ env });
      const result = await job.waitForResult({ timeoutMs: 240_000 });
      expect(result.policies[0]).toMatchObject({
        name: 'old_events',
        matched: doomed.length,
        deleted: doomed.length,
      });
      // Resumed, not started over: matched counts what the first worker deleted too (its checkpoint),
      // and the batches are those of one walk: PostgreSQL's of 200 keys, MongoDB's by _id of 200
      // documents; windows of time hold from one document to 1.5 batches.
      const oneWalk =
        store === 'postgres'
          ? Math.ceil(N / 200)
          : walk === 'key'
            ? Math.ceil(doomed.length / 200)
            : Math.ceil(doomed.length / 100);
      expect(result.policies[0]!.batches).toBeLessThanOrEqual(oneWalk + 2);
      const after = await digests(tenant, store);
      const gone = new Set(doomed.map((r) => r.id));
      expect([...after.keys()]).toEqual(rows.map((r) => r.id).filter((id) => !gone.has(id)));
      for (const [id, digest] of after) expect(digest).toBe(before.get(id));
    },
  );
});
