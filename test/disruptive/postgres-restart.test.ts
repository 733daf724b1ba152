/** PostgreSQL restarted in the middle of a job: the attempt fails as transient, is retried, and completes. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { expect, vi } from 'vitest';
import { generateFile } from '../../demo/generate.ts';
import { eventually, ROOT, test } from '../support/fixtures.ts';
import { countRows, fileLoad } from '../support/loads.ts';

test(
  'a job survives a PostgreSQL restart: retried with backoff, exact count',
  { timeout: 300_000 },
  async ({ client, tenant, files, startWorker, deps }) => {
    const rows = 500_000;
    const file = path.join(files, 'users.ndjson');
    await generateFile(file, { dataset: 'users', seed: 5, scale: rows });
    startWorker({ concurrency: 1 });
    const job = await client.enqueue(
      'load-fixtures',
      fileLoad(tenant.id, 'postgres', 'users', file, { batchSize: 5_000 }),
    );
    const queue = client.queue('load-fixtures');
    await eventually(
      async () => ((await queue.getJob(job.id))?.progress as { records?: number })?.records ?? 0,
      60_000,
      20,
    );
    execFileSync('bash', [path.join(ROOT, 'scripts/services.sh'), 'restart', 'postgres'], {
      stdio: 'ignore',
    });

    const result = await job.waitForResult({ timeoutMs: 240_000 });
    expect(result.loaded).toBe(rows);
    const finished = await queue.getJob(job.id);
    expect(finished!.attemptsMade).toBeGreaterThanOrEqual(1); // at least one failed attempt before success
    expect(result.resumedFrom).toBeGreaterThan(0);
    const count = await countRows(tenant, 'users');
    expect(count).toBe(rows);
    await vi.waitFor(async () => {
      const audit = await deps.control.jobRun(deps.prefix, 'load-fixtures', job.id);
      expect(audit).toMatchObject({ status: 'completed' });
      expect(audit!.attempts).toBeGreaterThanOrEqual(2);
    });
  },
);
