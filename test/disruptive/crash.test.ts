/**
 * Workers die: kill -9 in the middle of a million-row load, and SIGTERM during a job. Another worker
 * finishes the job from its checkpoint: exact count, no duplicates, nothing lost.
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Job } from 'bullmq';
import { expect } from 'vitest';
import { generateFile } from '../../demo/generate.ts';
import { eventually, test, type TenantHandle } from '../support/fixtures.ts';
import { countRows, fileLoad } from '../support/loads.ts';

const ROWS = 1_000_000;
const FAST_TAKEOVER = { DBFLEET_LOCK_DURATION_MS: '2000' };

/** Without its unique constraints a duplicated row would be counted instead of refused. */
async function dropUniqueness(t: TenantHandle) {
  await t.pg.withClient((c) =>
    c.query('ALTER TABLE users DROP CONSTRAINT users_pkey CASCADE, DROP CONSTRAINT users_email_key'),
  );
}

const loaded = (job: Job | undefined) => (job?.progress as { records?: number } | undefined)?.records ?? 0;

test(
  'kill -9 mid-load: a second worker resumes from the checkpoint; exact count, no duplicates',
  { timeout: 600_000 },
  async ({ client, tenant, files, spawnWorker }) => {
    await dropUniqueness(tenant);
    const file = path.join(files, 'users.ndjson');
    await generateFile(file, { dataset: 'users', seed: 3, scale: ROWS });
    const first = await spawnWorker({ env: FAST_TAKEOVER });
    const job = await client.enqueue('load-fixtures', fileLoad(tenant.id, 'postgres', 'users', file));
    const queue = client.queue('load-fixtures');
    await eventually(async () => loaded(await queue.getJob(job.id)) >= 200_000, 120_000, 20);
    first.proc.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const beforeTakeover = await countRows(tenant, 'users');
    expect(beforeTakeover).toBeGreaterThan(0);
    expect(beforeTakeover).toBeLessThan(ROWS);

    await spawnWorker({ env: FAST_TAKEOVER });
    const result = await job.waitForResult({ timeoutMs: 300_000 });
    expect(result.resumedFrom).toBeGreaterThan(0);
    expect(result.loaded).toBe(ROWS);
    const { total, distinct } = await tenant.pg.withClient(
      async (c) =>
        (await c.query('SELECT count(*)::int AS total, count(DISTINCT id)::int AS "distinct" FROM users'))
          .rows[0],
    );
    expect(total).toBe(ROWS);
    expect(distinct).toBe(ROWS);
  },
);

test(
  'kill -9 mid-load into MongoDB: the next worker resumes; exact count, no duplicates, nothing rejected',
  { timeout: 600_000 },
  async ({ client, tenant, files, spawnWorker }) => {
    const rows = 300_000;
    const generated = path.join(files, 'generated.ndjson');
    await generateFile(generated, { dataset: 'listening_events', seed: 6, scale: rows });
    // Without an _id of their own, documents get one derived from the run and line: the path a
    // redelivered batch must recognise as its own. The event's id stays, to count distinct events.
    const file = path.join(files, 'events.ndjson');
    const lines = (await readFile(generated, 'utf8')).trimEnd().split('\n');
    await writeFile(
      file,
      lines
        .map((line) => {
          const { _id, ...event } = JSON.parse(line) as Record<string, unknown>;
          return JSON.stringify({ eventId: _id, ...event });
        })
        .join('\n'),
    );
    const first = await spawnWorker({ env: FAST_TAKEOVER });
    const job = await client.enqueue('load-fixtures', {
      ...fileLoad(tenant.id, 'mongo', 'listening_events', file, { batchSize: 5_000 }),
      schema: undefined,
    });
    const queue = client.queue('load-fixtures');
    await eventually(async () => loaded(await queue.getJob(job.id)) >= 60_000, 120_000, 20);
    first.proc.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const events = tenant.mongo.collection('listening_events');
    const beforeTakeover = await events.countDocuments();
    expect(beforeTakeover).toBeGreaterThan(0);
    expect(beforeTakeover).toBeLessThan(rows);

    await spawnWorker({ env: FAST_TAKEOVER });
    const result = await job.waitForResult({ timeoutMs: 300_000 });
    expect(result).toMatchObject({ read: rows, loaded: rows, rejected: 0 });
    expect(result.resumedFrom).toBeGreaterThan(0);
    expect(await events.countDocuments()).toBe(rows);
    expect((await events.distinct('eventId')).length).toBe(rows);
  },
);

test(
  'SIGTERM during a job: the worker exits within its bound and the job is not lost',
  { timeout: 300_000 },
  async ({ client, tenant, files, spawnWorker }) => {
    const file = path.join(files, 'users.ndjson');
    await generateFile(file, { dataset: 'users', seed: 4, scale: 300_000 });
    const graceMs = 5_000;
    const first = await spawnWorker({ env: { DBFLEET_SHUTDOWN_GRACE_MS: String(graceMs) } });
    const job = await client.enqueue(
      'load-fixtures',
      fileLoad(tenant.id, 'postgres', 'users', file, { batchSize: 5_000 }),
    );
    const queue = client.queue('load-fixtures');
    await eventually(async () => loaded(await queue.getJob(job.id)) > 0, 60_000, 20);
    const signalled = Date.now();
    first.proc.kill('SIGTERM');
    const exit = await first.exited;
    expect(exit.code).toBe(0);
    expect(Date.now() - signalled).toBeLessThan(graceMs);
    // Handed back at its checkpoint: waiting again, no attempt used up.
    const handedBack = await queue.getJob(job.id);
    expect(await handedBack!.getState()).toBe('waiting');
    expect(handedBack!.attemptsMade).toBe(0);

    await spawnWorker();
    const result = await job.waitForResult({ timeoutMs: 120_000 });
    expect(result.resumedFrom).toBeGreaterThan(0);
    expect(result.loaded).toBe(300_000);
    const count = await countRows(tenant, 'users');
    expect(count).toBe(300_000);
  },
);
