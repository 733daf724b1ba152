/**
 * The MongoDB-compatible server restarts in the middle of a load into MongoDB: FerretDB itself, or
 * the PostgreSQL cluster under it. The job completes with every document exactly once. Where the
 * outage fails the attempt in flight (FerretDB's PostgreSQL cut its sessions; FerretDB away for
 * longer than the driver waits for a server), the job is retried with backoff and resumes from its
 * checkpoint. A quick, clean restart of FerretDB may fail no attempt at all: FerretDB finishes the
 * command in flight, and the driver waits for the server to come back.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { Queue } from 'bullmq';
import { expect, vi } from 'vitest';
import { generateFile } from '../../demo/generate.ts';
import { eventually, ROOT, test } from '../support/fixtures.ts';
import { fileLoad } from '../support/loads.ts';

const ROWS = 200_000;
const services = (...args: string[]) =>
  execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), ...args], { stdio: 'ignore' });

/** A failed attempt leaves its stack trace on the job; the retry waits out the backoff. */
const failedAttempts = async (queue: Queue, id: string) => (await queue.getJob(id))?.stacktrace?.length ?? 0;

const cases = [
  {
    name: 'FerretDB’s PostgreSQL restarts', // services.sh restart mongo-postgres
    retried: true,
    disrupt: () => services('restart', 'mongo-postgres'),
  },
  {
    name: 'FerretDB is down until the attempt fails',
    retried: true,
    disrupt: async (queue: Queue, id: string) => {
      services('stop', 'mongo');
      // The driver waits for a server for 10 s (serverSelectionTimeoutMS) before the attempt fails.
      await eventually(() => failedAttempts(queue, id), 60_000, 100);
      services('up');
    },
  },
  {
    name: 'FerretDB restarts',
    retried: false,
    disrupt: () => services('restart', 'mongo'),
  },
];

test.for(cases)(
  'a load into MongoDB survives when $name: exact count, no duplicates',
  { timeout: 300_000 },
  async (c, { client, tenant, files, startWorker, deps }) => {
    const file = path.join(files, 'listening_events.ndjson');
    await generateFile(file, { dataset: 'listening_events', seed: 11, scale: ROWS });
    startWorker({ concurrency: 1 });
    const job = await client.enqueue(
      'load-fixtures',
      fileLoad(tenant.id, 'mongo', 'listening_events', file, { batchSize: 5_000 }),
    );
    const queue = client.queue('load-fixtures');
    const records = async () =>
      ((await queue.getJob(job.id))?.progress as { records?: number })?.records ?? 0;
    await eventually(records, 60_000, 20);
    await c.disrupt(queue, job.id);
    expect(await records()).toBeLessThan(ROWS); // the outage was mid-job

    const result = await job.waitForResult({ timeoutMs: 240_000 });
    expect(result).toMatchObject({ read: ROWS, loaded: ROWS, rejected: 0 });
    const events = tenant.mongo.collection('listening_events');
    expect(await events.countDocuments()).toBe(ROWS);
    expect((await events.distinct('_id')).length).toBe(ROWS);
    if (c.retried) {
      expect(await failedAttempts(queue, job.id)).toBeGreaterThanOrEqual(1);
      expect(result.resumedFrom).toBeGreaterThan(0);
    }
    await vi.waitFor(
      async () => {
        const audit = await deps.control.jobRun(deps.prefix, 'load-fixtures', job.id);
        expect(audit).toMatchObject({ status: 'completed' });
        if (c.retried) expect(audit!.attempts).toBeGreaterThanOrEqual(2);
      },
      { timeout: 30_000 },
    );
  },
);
