/** Runners killed with -9 mid-migration: their locks are taken over only once free, and a backfill resumes. */
import { LeaseLock } from '../../src/migrations/lease-lock.ts';
import { tenantStores } from '../../src/control/provision.ts';
import { eventually, expect, test, uniqueId, type Deployment } from '../support/migrations.ts';

const LEASE_MS = 3_000;
const workerEnv = (d: Deployment) => ({
  DBFLEET_CONTROL_DATABASE_URL: d.env.DBFLEET_CONTROL_DATABASE_URL,
  DBFLEET_TENANT_POSTGRES_URL: d.env.DBFLEET_TENANT_POSTGRES_URL!,
  DBFLEET_CONFIG: d.configFile,
  DBFLEET_MIGRATE_LEASE_MS: String(LEASE_MS),
  DBFLEET_LOCK_DURATION_MS: '3000',
});

test('a lock whose owner was killed -9 is taken over after its lease, not before (MongoDB); PostgreSQL frees it with the session', async ({
  deployment,
  spawnWorker,
}) => {
  const hang = `export default { async up() { await new Promise((r) => setTimeout(r, 600_000)); } };`;
  const d = await deployment({
    postgres: { '0001_hang.sql': 'SELECT pg_sleep(600);' },
    mongo: { '0001_hang.ts': hang },
  });
  const [t] = await d.addTenants([uniqueId('k')]);
  const tenant = t!.pg.schema.slice(2);
  const locks = t!.mongo.collection<{ _id: string; owner: string; renewedAt: Date }>('_dbfleet_locks');

  // MongoDB: the lease.
  let worker = await spawnWorker({ env: workerEnv(d) });
  await d.client.enqueue('migrate', { tenant, store: 'mongo' });
  const held = await eventually(() => locks.findOne({ _id: 'migrate' }));
  worker.proc.kill('SIGKILL');
  await worker.exited;
  const rival = new LeaseLock(t!.mongo, 'migrate', { leaseMs: LEASE_MS, waitMs: 0 });
  expect(await rival.tryAcquire()).toBe(false); // the dead owner's lease has not lapsed yet
  let lastSeen = held.renewedAt;
  await eventually(
    async () => {
      lastSeen = (await locks.findOne({ _id: 'migrate' }))?.renewedAt ?? lastSeen;
      return (await locks.findOne({ _id: 'migrate' }))?.owner === held.owner ? rival.tryAcquire() : false;
    },
    30_000,
    100,
  );
  const taken = (await locks.findOne({ _id: 'migrate' }))!;
  expect(taken.owner).toBe(rival.owner);
  // Judged by the server's clock: the takeover's timestamp is at least a lease after the last renewal.
  expect(taken.renewedAt.getTime() - lastSeen.getTime()).toBeGreaterThanOrEqual(LEASE_MS);
  await rival.release();

  // PostgreSQL: the advisory lock is the session's, gone when the killed runner's session is.
  const lockHeld = () =>
    t!.pg.withClient(async (c) => {
      const r = await c.query(
        `SELECT pg_try_advisory_lock(hashtext('dbfleet.migrate'), hashtext($1)) AS ok`,
        [t!.pg.schema],
      );
      if (r.rows[0].ok)
        await c.query(`SELECT pg_advisory_unlock(hashtext('dbfleet.migrate'), hashtext($1))`, [t!.pg.schema]);
      return !r.rows[0].ok;
    });
  worker = await spawnWorker({ env: workerEnv(d) });
  await d.client.enqueue('migrate', { tenant, store: 'postgres' });
  await eventually(lockHeld);
  worker.proc.kill('SIGKILL');
  await worker.exited;
  await eventually(async () => !(await lockHeld()), 15_000, 200);
});

test('kill -9 during a backfill over 1,000,000 MongoDB documents: the retried job resumes from its checkpoint, each document migrated exactly once', async ({
  deployment,
  spawnWorker,
}) => {
  const d = await deployment({
    mongo: {
      // $inc is not idempotent: a document migrated twice would show 2.
      '0001_backfill.ts': `export default { async up({ backfill }) {
        await backfill({ name: 'inc', collection: 'events', update: { $inc: { migrated: 1 } }, batchSize: 20_000 });
      } };`,
    },
  });
  const [t] = await d.addTenants([uniqueId('f')]);
  const tenant = t!.pg.schema.slice(2);
  const events = tenantStores(d.deps, tenant).mongo.collection('events');
  const N = 1_000_000;
  for (let i = 0; i < N; i += 20_000)
    await events.insertMany(
      Array.from({ length: 20_000 }, (_, k) => ({
        _id: `ev${String(i + k).padStart(8, '0')}` as never,
        n: i + k,
      })),
      { ordered: false },
    );

  const first = await spawnWorker({ env: workerEnv(d) });
  const job = await d.client.enqueue('migrate', { tenant, store: 'mongo' });
  const checkpoints = t!.mongo.collection<{ _id: string; processed: number }>('_dbfleet_backfills');
  await eventually(
    async () => ((await checkpoints.findOne({ _id: '1/inc' }))?.processed ?? 0) >= 200_000,
    120_000,
  );
  first.proc.kill('SIGKILL');
  await first.exited;
  const atKill = (await checkpoints.findOne({ _id: '1/inc' }))!.processed;
  expect(atKill).toBeLessThan(N);

  const second = await spawnWorker({ env: workerEnv(d) });
  const result = await job.waitForResult({ timeoutMs: 300_000 });
  expect(result.tenants[0]).toMatchObject({ store: 'mongo', status: 'ok', current: '1' });
  expect(await events.countDocuments({ migrated: 1 })).toBe(N);
  expect(await events.countDocuments({ migrated: { $ne: 1 } })).toBe(0);
  expect(await t!.mongo.collection('_dbfleet_migrations').countDocuments()).toBe(1);
  // The second worker started from the checkpoint, not from the first document.
  const resumedFrom = Number(/"backfill":"inc".*?"resumedFrom":(\d+)/.exec(second.output())?.[1]);
  expect(resumedFrom).toBeGreaterThanOrEqual(atKill);
});
