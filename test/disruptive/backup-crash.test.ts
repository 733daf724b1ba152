/**
 * kill -9 of the worker in the middle of a backup and of a restore: the retried job completes, no
 * partial backup is ever listed as complete, and the restore target is untouched until it is fully
 * restored.
 */
import type { Job } from 'bullmq';
import { expect } from 'vitest';
import { BackupCatalog } from '../../src/backup/catalog.ts';
import { manifestKey } from '../../src/backup/layout.ts';
import { digests, fillTenant } from '../support/backups.ts';
import { eventually, test } from '../support/fixtures.ts';

const FAST_TAKEOVER = { DBFLEET_LOCK_DURATION_MS: '2000' };
const progressOf = (job: Job | undefined) =>
  (job?.progress ?? {}) as { phase?: string; objects?: number; objectsTotal?: number };

test(
  'kill -9 mid-backup, then mid-restore: both complete on the next worker, exactly',
  { timeout: 600_000 },
  async ({ deps, client, tenant, spawnWorker }) => {
    await fillTenant(tenant, 100);
    // Two big tables, so that a kill lands inside a table's copy.
    await tenant.pg.withClient((c) =>
      c.query(`INSERT INTO users SELECT i, 'u' || i || '@example.test', repeat('n', 40), 'FR', 1980, now()
               FROM generate_series(1000, 700000) i;
               INSERT INTO playlist_tracks SELECT 1, i, repeat('t', 40), now() FROM generate_series(1000, 700000) i`),
    );
    const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
    const queue = client.queue('backup');

    const first = await spawnWorker({ env: FAST_TAKEOVER });
    const job = await client.enqueue('backup', { tenant: tenant.id });
    // The collections are stored and the tables under way.
    await eventually(async () => progressOf(await queue.getJob(job.id)).phase === 'postgres', 120_000, 10);
    first.proc.kill('SIGKILL');
    await first.exited;
    const [row] = await catalog.list(tenant.id);
    expect(row).toMatchObject({ state: 'running' });
    expect(await deps.objects.head(manifestKey(tenant.id, row!.backup_id))).toBeNull();

    const second = await spawnWorker({ env: FAST_TAKEOVER });
    const backup = await job.waitForResult({ timeoutMs: 300_000 });
    // The restore below must run on the worker this test kills, not on this one.
    second.proc.kill('SIGKILL');
    await second.exited;
    // The same backup, finished by the retry: one catalog row, complete.
    expect(backup.backupId).toBe(row!.backup_id);
    expect((await catalog.list(tenant.id)).map((b) => [b.backup_id, b.state])).toEqual([
      [backup.backupId, 'complete'],
    ]);
    const atBackup = await digests(tenant);

    // The tenant changes; a restore of the backup into it is killed while it stages.
    await tenant.pg.withClient((c) => c.query(`DELETE FROM users WHERE id > 600000`));
    await tenant.mongo.collection('sessions').deleteMany({});
    const changed = await digests(tenant);
    const restores = client.queue('restore');
    const third = await spawnWorker({ env: FAST_TAKEOVER });
    const restore = await client.enqueue('restore', { tenant: tenant.id, backupId: backup.backupId });
    // Verified whole, and staging begun: the swap is seconds of copying and index building away.
    await eventually(
      async () => {
        const p = progressOf(await restores.getJob(restore.id));
        return p.phase === 'verify' && p.objects === p.objectsTotal;
      },
      120_000,
      5,
    );
    third.proc.kill('SIGKILL');
    await third.exited;
    expect(await digests(tenant)).toEqual(changed);

    await spawnWorker({ env: FAST_TAKEOVER });
    await restore.waitForResult({ timeoutMs: 300_000 });
    expect(await digests(tenant)).toEqual(atBackup);
    const staging = await deps.control.pool.query(
      `SELECT 1 FROM pg_namespace WHERE nspname LIKE '\\_dbfleet\\_r\\_%'`,
    );
    expect(staging.rowCount).toBe(0);
  },
);
