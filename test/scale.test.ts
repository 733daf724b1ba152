/** A million rows each way, with exact counts: the load is neither lossy nor duplicating at scale. */
import path from 'node:path';
import { expect } from 'vitest';
import { generateFile } from '../demo/generate.ts';
import { test } from './support/fixtures.ts';
import { countRows, fileLoad } from './support/loads.ts';

const MILLION = 1_000_000;

test(
  '1M users (1% bad) into PostgreSQL: the good rows land and each bad one is reported',
  { timeout: 600_000 },
  async ({ client, tenant, startWorker, files, deps }) => {
    const file = path.join(files, 'users.ndjson');
    await generateFile(file, { dataset: 'users', seed: 7, scale: MILLION, badRate: 0.01 });
    startWorker({ concurrency: 1 });
    const job = await client.enqueue('load-fixtures', fileLoad(tenant.id, 'postgres', 'users', file));
    const result = await job.waitForResult({ timeoutMs: 600_000 });
    expect(result).toMatchObject({ read: MILLION, loaded: 990_000, rejected: 10_000 });
    const count = await countRows(tenant, 'users');
    expect(count).toBe(990_000);
    // Every 100th line is bad: alternately a missing and a malformed email.
    const rejections = await deps.control.rejections(job.runId, 20_000);
    expect(rejections).toHaveLength(10_000);
    expect(rejections.every((r, i) => r.line === (i + 1) * 100)).toBe(true);
    expect(rejections[0]!.reason).toMatch(/^email: Invalid email/);
    expect(rejections[1]!.reason).toMatch(/^email: Invalid input: expected string, received undefined/);
  },
);

test(
  '1M listening events into MongoDB: exact count',
  { timeout: 900_000 },
  async ({ client, tenant, startWorker, files }) => {
    const file = path.join(files, 'events.ndjson');
    await generateFile(file, { dataset: 'listening_events', seed: 7, scale: MILLION });
    startWorker({ concurrency: 1 });
    const job = await client.enqueue('load-fixtures', fileLoad(tenant.id, 'mongo', 'listening_events', file));
    const result = await job.waitForResult({ timeoutMs: 900_000 });
    expect(result).toMatchObject({ read: MILLION, loaded: MILLION, rejected: 0 });
    expect(await tenant.mongo.collection('listening_events').countDocuments()).toBe(MILLION);
  },
);
