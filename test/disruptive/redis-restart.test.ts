/**
 * Redis restarted in the middle of a load: it keeps its data (append-only file), the worker
 * reconnects, and the job completes with the exact count and no duplicates, into either store.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect, vi } from 'vitest';
import { generateFile } from '../../demo/generate.ts';
import { eventually, ROOT, test, type TenantHandle } from '../support/fixtures.ts';
import { countRows, fileLoad } from '../support/loads.ts';

const cases = [
  {
    store: 'postgres' as const,
    dataset: 'users' as const,
    rows: 300_000,
    distinct: async (t: TenantHandle) =>
      t.pg.withClient(
        async (c) =>
          (await c.query('SELECT count(*)::int AS total, count(DISTINCT id)::int AS "distinct" FROM users'))
            .rows[0] as { total: number; distinct: number },
      ),
  },
  {
    store: 'mongo' as const,
    dataset: 'listening_events' as const,
    rows: 200_000,
    distinct: async (t: TenantHandle) => {
      const events = t.mongo.collection('listening_events');
      return { total: await events.countDocuments(), distinct: (await events.distinct('_id')).length };
    },
  },
];

test.for(cases)(
  'a load into $store survives a Redis restart: exact count, no duplicates, audit complete',
  { timeout: 300_000 },
  async (c, { client, tenant, files, startWorker, deps }) => {
    const file = path.join(files, `${c.dataset}.ndjson`);
    await generateFile(file, { dataset: c.dataset, seed: 8, scale: c.rows });
    startWorker({ concurrency: 1 });
    const job = await client.enqueue(
      'load-fixtures',
      fileLoad(tenant.id, c.store, c.dataset, file, { batchSize: 5_000 }),
    );
    const queue = client.queue('load-fixtures');
    await eventually(
      async () => ((await queue.getJob(job.id))?.progress as { records?: number })?.records ?? 0,
      60_000,
      20,
    );
    const serverRun = async () => /run_id:(\w+)/.exec(await deps.redis.info('server'))![1];
    const before = await serverRun();
    execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'restart', 'redis'], { stdio: 'ignore' });

    const result = await job.waitForResult({ timeoutMs: 240_000 });
    expect(await serverRun()).not.toBe(before); // Redis did restart
    expect(result).toMatchObject({ read: c.rows, loaded: c.rows, rejected: 0 });
    expect(await c.distinct(tenant)).toEqual({ total: c.rows, distinct: c.rows });
    if (c.store === 'postgres') expect(await countRows(tenant, 'users')).toBe(c.rows);
    await vi.waitFor(
      async () =>
        expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', job.id)).toMatchObject({
          status: 'completed',
        }),
      { timeout: 30_000 },
    );
  },
);
