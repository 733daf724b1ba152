/**
 * Schedules reconciled into BullMQ job schedulers on the real Redis: added, changed, removed,
 * left alone when they match; the lease; a run end to end as an ordinary job; missed runs; the board.
 */
import { Queue, type Job } from 'bullmq';
import { describe, expect } from 'vitest';
import { defineConfig, type ScheduleConfig } from '../src/config/define.ts';
import { scheduledRunId, type JobEnvelope } from '../src/jobs/envelope.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { startBoard } from '../src/board/server.ts';
import { defineScheduler, schedulerId } from '../src/schedules/definitions.ts';
import { RedisLease } from '../src/schedules/lease.ts';
import { listSchedules } from '../src/schedules/list.ts';
import {
  closeQueues,
  readSchedulers,
  scheduleQueues,
  type ExistingScheduler,
} from '../src/schedules/plan.ts';
import { nextRun, repeatStrategy } from '../src/schedules/strategy.ts';
import { checkedSchedules, leaseKey, syncSchedules, type SyncReport } from '../src/schedules/sync.ts';
import { cliFor } from './support/cli.ts';
import { drainAudit, eventually, ROOT, test } from './support/fixtures.ts';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

const schedulesOf = (...s: ScheduleConfig[]) => checkedSchedules(defineConfig({ schedules: s }));

async function sync(deps: FleetDeps, schedules: ReturnType<typeof schedulesOf>): Promise<SyncReport> {
  const outcome = await syncSchedules(deps, { schedules });
  if (outcome.status !== 'synced') throw new Error('the lease was busy');
  return outcome.report;
}

async function ours(deps: FleetDeps): Promise<ExistingScheduler[]> {
  const queues = scheduleQueues(deps);
  try {
    return (await readSchedulers(deps, queues)).sort((a, b) => a.id.localeCompare(b.id));
  } finally {
    await closeQueues(queues);
  }
}

/** Everything Redis holds for a queue's schedulers and their pending runs, and the events stream's length. */
async function rawState(deps: FleetDeps, queue: string) {
  const base = `${deps.prefix}:${queue}`;
  const ids = await deps.redis.zrange(`${base}:repeat`, '0', '-1');
  return {
    schedulers: await deps.redis.zrange(`${base}:repeat`, '0', '-1', 'WITHSCORES'),
    definitions: await Promise.all(ids.map((id) => deps.redis.hgetall(`${base}:repeat:${id}`))),
    delayed: await deps.redis.zrange(`${base}:delayed`, '0', '-1', 'WITHSCORES'),
    events: await deps.redis.xlen(`${base}:events`),
  };
}

const names = (items: { schedule: string; tenant: string }[]) =>
  items.map((i) => `${i.schedule}/${i.tenant}`).sort();

const nightly = (tenants: ScheduleConfig['tenants'], cron = '0 3 * * *'): ScheduleConfig => ({
  name: 'nightly_backup',
  job: 'backup',
  cron,
  timeZone: 'Europe/Paris',
  tenants,
  payload: { destination: 'local' },
  spreadMinutes: 30,
});
const hourly = (tenants: string[]): ScheduleConfig => ({
  name: 'hourly_cleanup',
  job: 'cleanup',
  cron: '0 * * * *',
  timeZone: 'UTC',
  tenants,
  payload: { dryRun: true },
});

describe('schedules sync', () => {
  test('adds one scheduler per schedule and tenant, first run as the strategy computes it; a second sync writes nothing', async ({
    deps,
    tenant,
    spareTenant,
  }) => {
    const spare = await spareTenant();
    const registered = (await deps.control.listTenants()).map((t) => t.id);
    expect(registered).toEqual(expect.arrayContaining([tenant.id, spare.id]));
    const schedules = schedulesOf(nightly('all'), hourly([tenant.id, 'not_registered']));
    const before = Date.now();
    const first = await sync(deps, schedules);
    const after = Date.now();
    expect(names(first.added)).toEqual(
      [...registered.map((t) => `nightly_backup/${t}`), `hourly_cleanup/${tenant.id}`].sort(),
    );
    expect(first).toMatchObject({ changed: [], removed: [], unchanged: 0, failed: [] });
    expect(first.skipped).toEqual([
      { schedule: 'hourly_cleanup', tenant: 'not_registered', reason: 'not a registered tenant' },
    ]);

    const found = await ours(deps);
    expect(found.map((s) => s.id)).toEqual(first.added.map((a) => schedulerId(a.schedule, a.tenant)).sort());
    for (const s of found) {
      const wanted = defineScheduler(
        schedules.find((c) => c.name === s.schedule)!,
        s.tenant,
      );
      // Upserted between before and after: its first run is the strategy's next after that moment.
      expect([nextRun(wanted.timing, before), nextRun(wanted.timing, after)]).toContain(s.next);
      expect(s).toMatchObject({ pattern: wanted.repeat.pattern, tz: wanted.repeat.tz, pending: true });
      expect(s.definition).toBe(wanted.definition);
    }
    // Tenants' runs are spread: the nightly ones do not share a second.
    const nightlyRuns = found.filter((s) => s.schedule === 'nightly_backup').map((s) => s.next);
    expect(new Set(nightlyRuns).size).toBe(nightlyRuns.length);
    // One pending run per scheduler, named by it and its next time.
    for (const queue of ['backup', 'cleanup'] as const) {
      const mine = found.filter((s) => s.queue === queue);
      const delayed = (await rawState(deps, queue)).delayed.filter((_, i) => i % 2 === 0);
      expect(delayed.sort()).toEqual(mine.map((s) => `repeat:${s.id}:${s.next}`).sort());
    }

    const backupBefore = await rawState(deps, 'backup');
    const cleanupBefore = await rawState(deps, 'cleanup');
    const second = await sync(deps, schedules);
    expect(second).toEqual({
      added: [],
      changed: [],
      removed: [],
      unchanged: found.length,
      skipped: first.skipped,
      failed: [],
    });
    // Not one write: same schedulers, same next runs, same pending jobs, no event.
    expect(await rawState(deps, 'backup')).toEqual(backupBefore);
    expect(await rawState(deps, 'cleanup')).toEqual(cleanupBefore);
  });

  test('a changed cron changes the scheduler in place; a tenant or schedule gone from the config goes; schedulers not ours stay', async ({
    deps,
    tenant,
    spareTenant,
  }) => {
    const spare = await spareTenant();
    const theirs = new Queue('backup', { connection: deps.redis, prefix: deps.prefix });
    try {
      await theirs.upsertJobScheduler('their-own-nightly', { pattern: '0 4 * * *' }, { name: 'theirs' });
      const theirsBefore = await theirs.getJobScheduler('their-own-nightly');

      await sync(deps, schedulesOf(nightly([tenant.id, spare.id]), hourly([tenant.id])));
      const changedCron = nightly([tenant.id, spare.id], '15 1 * * 1');
      const changed = await sync(deps, schedulesOf(changedCron, hourly([tenant.id])));
      expect(names(changed.changed)).toEqual(
        [`nightly_backup/${spare.id}`, `nightly_backup/${tenant.id}`].sort(),
      );
      expect(changed.changed.every((c) => c.why === 'definition')).toBe(true);
      expect(changed).toMatchObject({ added: [], removed: [], unchanged: 1 });
      const now = Date.now();
      for (const s of (await ours(deps)).filter((x) => x.schedule === 'nightly_backup')) {
        expect(s.pattern).toBe('15 1 * * 1');
        const timing = defineScheduler(schedulesOf(changedCron)[0]!, s.tenant).timing;
        expect(s.next).toBe(nextRun(timing, now - 5_000));
      }
      // The old pending runs went with the change: one pending run each, the new one.
      const delayed = (await rawState(deps, 'backup')).delayed.filter((_, i) => i % 2 === 0);
      expect(delayed).toHaveLength(3); // two of ours, one of theirs

      const fewer = await sync(deps, schedulesOf(nightly([tenant.id], '15 1 * * 1')));
      expect(names(fewer.removed)).toEqual(
        [`hourly_cleanup/${tenant.id}`, `nightly_backup/${spare.id}`].sort(),
      );
      expect(fewer).toMatchObject({ added: [], changed: [], unchanged: 1 });
      expect((await ours(deps)).map((s) => s.id)).toEqual([schedulerId('nightly_backup', tenant.id)]);
      expect((await rawState(deps, 'cleanup')).delayed).toEqual([]);

      // Removed, then added again at once: a pending run again (not the "upsert creates nothing"
      // of a removal and an upsert in the same slot).
      await sync(deps, schedulesOf());
      expect(await ours(deps)).toEqual([]);
      const back = await sync(deps, schedulesOf(nightly([tenant.id], '15 1 * * 1')));
      expect(names(back.added)).toEqual([`nightly_backup/${tenant.id}`]);
      expect((await ours(deps))[0]).toMatchObject({ pending: true });

      expect(await theirs.getJobScheduler('their-own-nightly')).toEqual(theirsBefore);
    } finally {
      await theirs.close();
    }
  });

  test('a scheduler left without a pending run (it would never fire again) is repaired', async ({
    deps,
    tenant,
  }) => {
    const schedules = schedulesOf(hourly([tenant.id]));
    await sync(deps, schedules);
    const [stuck] = await ours(deps);
    const jobId = `repeat:${stuck!.id}:${stuck!.next}`;
    // As if its run had been lost: gone from the delayed set and from Redis.
    await deps.redis.zrem(`${deps.prefix}:cleanup:delayed`, jobId);
    await deps.redis.del(`${deps.prefix}:cleanup:${jobId}`);
    expect((await ours(deps))[0]).toMatchObject({ pending: false });
    const repaired = await sync(deps, schedules);
    expect(repaired.changed).toEqual([
      expect.objectContaining({ schedule: 'hourly_cleanup', tenant: tenant.id, why: 'no pending run' }),
    ]);
    expect((await ours(deps))[0]).toMatchObject({ pending: true });
    expect((await sync(deps, schedules)).unchanged).toBe(1);
  });

  test('one process at a time: a sync waits for the lease or reports it busy; only its holder releases it', async ({
    deps,
    tenant,
  }) => {
    const schedules = schedulesOf(hourly([tenant.id]));
    const other = new RedisLease(deps.redis, leaseKey(deps.prefix), 10_000);
    expect(await other.tryAcquire()).toBe(true);
    const busy = await syncSchedules(deps, { schedules });
    expect(busy).toEqual({ status: 'busy', heldForMs: expect.any(Number) });
    expect((busy as { heldForMs: number }).heldForMs).toBeGreaterThan(5_000);
    expect(await ours(deps)).toEqual([]);
    // Someone else's token neither renews nor releases it.
    const stranger = new RedisLease(deps.redis, leaseKey(deps.prefix), 10_000);
    await stranger.release();
    expect(await deps.redis.get(leaseKey(deps.prefix))).toBe(other.token);

    const waiting = syncSchedules(deps, { schedules, waitMs: 5_000 });
    setTimeout(() => void other.release(), 300);
    const outcome = await waiting;
    expect(outcome.status).toBe('synced');
    expect(await deps.redis.exists(leaseKey(deps.prefix))).toBe(0);
    expect(await ours(deps)).toHaveLength(1);
  });

  test('dbfleet schedules sync waits briefly for a busy lease, then says so and fails; then it syncs', async ({
    deps,
    env,
    tmp,
    tenant,
  }) => {
    const config = path.join(tmp, 'dbfleet.config.ts');
    await writeFile(
      config,
      `import { defineConfig } from ${JSON.stringify(path.join(ROOT, 'src/config/define.ts'))};
export default defineConfig({ schedules: ${JSON.stringify([hourly([tenant.id])])} });\n`,
    );
    const cli = cliFor(env, { DBFLEET_CONFIG: config });
    const other = new RedisLease(deps.redis, leaseKey(deps.prefix), 10_000);
    expect(await other.tryAcquire()).toBe(true);
    const started = Date.now();
    await expect(cli('schedules', 'sync', '--wait', '500')).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(
        /^another process is syncing the schedules \(its lease runs \d+ s more\); try again/,
      ),
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    await other.release();
    const report = JSON.parse((await cli('schedules', 'sync')).stdout) as SyncReport;
    expect(names(report.added)).toEqual([`hourly_cleanup/${tenant.id}`]);
    expect(report.added[0]!.next).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);
  });

  test('schedules list: each scheduler with its cron, zone, next run in UTC and in its zone, and status', async ({
    deps,
    tenant,
  }) => {
    const schedules = schedulesOf(nightly([tenant.id, 'not_registered']));
    expect((await listSchedules(deps, schedules)).map((r) => r.status)).toEqual([
      'tenant not registered',
      'not created yet',
    ]);
    await sync(deps, schedules);
    const [row] = (await listSchedules(deps, schedules)).filter((r) => r.tenant === tenant.id);
    const [s] = await ours(deps);
    expect(row).toEqual({
      schedule: 'nightly_backup',
      job: 'backup',
      tenant: tenant.id,
      cron: '0 3 * * *',
      timeZone: 'Europe/Paris',
      spreadSeconds: defineScheduler(schedules[0]!, tenant.id).timing.spreadMs / 1000,
      next: new Date(s!.next!).toISOString(),
      nextLocal: expect.stringMatching(/^\d{4}-\d\d-\d\dT03:[0-2]\d:\d\d\+0[12]:00$/),
      status: 'in sync',
    });
    expect((await listSchedules(deps, schedulesOf(nightly([tenant.id], '0 4 * * *'))))[0]!.status).toBe(
      'differs from config',
    );
    expect((await listSchedules(deps, schedulesOf()))[0]).toMatchObject({
      tenant: tenant.id,
      status: 'not in config',
    });
  });
});

describe('scheduled runs', () => {
  test('each run is an ordinary job: validated, audited, a run id of its own; timed by the strategy in worker and queue; gone with its schedule', async ({
    deps,
    tenant,
    spareTenant,
    startWorker,
  }) => {
    const spare = await spareTenant();
    const schedules = schedulesOf({
      name: 'status_check',
      job: 'migrate',
      cron: '* * * * * *',
      timeZone: 'Europe/Paris',
      tenants: [tenant.id, spare.id],
      payload: { action: 'status' },
      spreadMinutes: 0.01, // 600 ms
    });
    const timing = (t: string) => defineScheduler(schedules[0]!, t).timing;
    const worker = startWorker({ queues: ['migrate'] });
    await worker.ready;
    await sync(deps, schedules);
    const queue = new Queue('migrate', { connection: deps.redis, prefix: deps.prefix });
    try {
      const completed = await eventually(async () => {
        const jobs = (await queue.getCompleted()) as Job<JobEnvelope>[];
        const per = (t: string) =>
          jobs.filter((j) => j.data.payload && (j.data.payload as { tenant: string }).tenant === t);
        return per(tenant.id).length >= 3 && per(spare.id).length >= 3 ? jobs : undefined;
      }, 20_000);
      const board = await startBoard(deps, '127.0.0.1', 0);
      try {
        const listed = (await (
          await fetch(`${board.url}/board/api/job-schedulers?queueName=migrate`)
        ).json()) as {
          schedulers: { id: string; pattern: string; tz: string; next: number }[];
        };
        expect(listed.schedulers.map((s) => s.id).sort()).toEqual(
          [schedulerId('status_check', spare.id), schedulerId('status_check', tenant.id)].sort(),
        );
        // Seen, not changed, from the board: its scheduler actions are refused like other writes.
        const id = encodeURIComponent(schedulerId('status_check', tenant.id));
        for (const [method, path] of [
          ['PUT', `/api/queues/migrate/job-schedulers/${id}/remove`],
          ['PUT', `/api/queues/migrate/job-schedulers/${id}/run`],
          ['PATCH', `/api/queues/migrate/job-schedulers/${id}`],
        ] as const)
          expect((await fetch(`${board.url}/board${path}`, { method })).status, path).toBe(403);
        const page = (await (
          await fetch(`${board.url}/board/api/queues?activeQueue=migrate&status=completed&jobsPerPage=50`)
        ).json()) as { queues: { name: string; jobs: { id: string }[] }[] };
        const shown = page.queues.find((q) => q.name === 'migrate')!.jobs.map((j) => j.id);
        expect(shown).toEqual(expect.arrayContaining(completed.slice(0, 3).map((j) => j.id!)));
      } finally {
        await board.close();
      }

      // Stop them, then look at what ran.
      const removed = await sync(deps, schedulesOf());
      expect(names(removed.removed)).toEqual(
        [`status_check/${spare.id}`, `status_check/${tenant.id}`].sort(),
      );
      expect(await queue.getDelayed()).toEqual([]);
      const settled = await eventually(async () => ((await queue.getActiveCount()) === 0 ? true : undefined));
      expect(settled).toBe(true);
      const ran = (await queue.getCompleted()) as Job<JobEnvelope>[];
      await new Promise((r) => setTimeout(r, 2_000));
      expect(await queue.getCompletedCount()).toBe(ran.length);

      for (const t of [tenant.id, spare.id]) {
        const sid = schedulerId('status_check', t);
        const times = ran
          .filter((j) => j.id!.startsWith(`repeat:${sid}:`))
          .map((j) => Number(j.id!.slice(`repeat:${sid}:`.length)))
          .sort((a, b) => a - b);
        expect(times.length).toBeGreaterThanOrEqual(3);
        // Each run at a whole second plus the tenant's spread, each the strategy's next after the
        // one before: BullMQ's default would give whole seconds, without the spread.
        const { spreadMs } = timing(t);
        expect(spreadMs % 1000).toBeGreaterThan(0);
        for (const m of times) expect((m - spreadMs) % 1000).toBe(0);
        for (let i = 1; i < times.length; i++) expect(times[i]).toBe(nextRun(timing(t), times[i - 1]!));
      }
      for (const j of ran) expect(j.returnvalue).toMatchObject({ action: 'status', summary: { failed: 0 } });

      // Audited like any job, each run under its own run id, asked for by its schedule.
      await drainAudit(deps);
      const { rows } = await deps.control.pool.query<{
        job_id: string;
        run_id: string;
        tenant: string;
        status: string;
        requested_by: string;
      }>(
        `SELECT job_id, run_id, tenant, status, requested_by FROM dbfleet.job_runs WHERE prefix = $1 AND queue = 'migrate'`,
        [deps.prefix],
      );
      expect(rows.map((r) => r.job_id).sort()).toEqual(ran.map((j) => j.id!).sort());
      for (const r of rows) {
        expect(r).toMatchObject({ status: 'completed', requested_by: 'schedule status_check' });
        expect(r.run_id).toBe(scheduledRunId(deps.prefix, r.job_id));
      }
      expect(new Set(rows.map((r) => r.run_id)).size).toBe(rows.length);
    } finally {
      await queue.close();
    }
  });

  test("a scheduler's run is checked by the worker like any job: a template it would refuse fails at once; a sync puts it right", async ({
    deps,
    tenant,
    startWorker,
  }) => {
    const schedules = schedulesOf({
      name: 'status_check',
      job: 'migrate',
      cron: '* * * * * *',
      timeZone: 'UTC',
      tenants: [tenant.id],
      payload: { action: 'status' },
      spreadMinutes: 0,
    });
    const wanted = defineScheduler(schedules[0]!, tenant.id);
    const queues = scheduleQueues(deps);
    const queue = queues.get('migrate')!;
    try {
      // As an older release or a hand-made scheduler might have written it: a misspelt field.
      const payload = { ...(wanted.template.data.payload as object), dryrun: true };
      await queue.upsertJobScheduler(wanted.id, wanted.repeat, {
        ...wanted.template,
        data: { ...wanted.template.data, payload },
      });
      startWorker({ queues: ['migrate'] });
      const failed = await eventually(async () => (await queue.getFailed())[0]);
      expect(failed.failedReason).toMatch(
        /^\[invalid_payload\] migrate payload is invalid: \(root\): Unrecognized key: "dryrun"/,
      );
      expect(failed.attemptsMade).toBe(1);
      expect(failed.returnvalue).toBeNull();

      const fixed = await sync(deps, schedules);
      expect(fixed.changed).toEqual([
        expect.objectContaining({ schedule: 'status_check', why: 'definition' }),
      ]);
      const good = await eventually(async () => (await queue.getCompleted())[0], 10_000);
      expect(good.returnvalue).toMatchObject({ action: 'status' });
      await sync(deps, schedulesOf());
      await eventually(async () => ((await queue.getActiveCount()) === 0 ? true : undefined));
    } finally {
      await closeQueues(queues);
    }
  });

  test('a run missed while no worker was up runs once, late, when one returns; the next is after that', async ({
    deps,
    tenant,
    startWorker,
  }) => {
    const schedules = schedulesOf({
      name: 'every_two_seconds',
      job: 'migrate',
      cron: '*/2 * * * * *',
      timeZone: 'UTC',
      tenants: [tenant.id],
      payload: { action: 'status' },
      spreadMinutes: 0,
    });
    await sync(deps, schedules);
    const [s] = await ours(deps);
    const missed = s!.next!;
    // Three fire times pass with no worker: BullMQ keeps one pending run, not one per fire time.
    await new Promise((r) => setTimeout(r, Math.max(0, missed - Date.now()) + 4_500));
    const queue = new Queue('migrate', { connection: deps.redis, prefix: deps.prefix });
    try {
      expect((await queue.getJobs(['delayed', 'wait'])).map((j) => j.id)).toEqual([
        `repeat:${s!.id}:${missed}`,
      ]);
      const returned = Date.now();
      startWorker({ queues: ['migrate'] });
      const first = await eventually(async () =>
        (await queue.getCompleted()).find((j) => j.id === `repeat:${s!.id}:${missed}`),
      );
      expect(first.processedOn!).toBeGreaterThan(missed + 4_000);
      await new Promise((r) => setTimeout(r, 3_000));
      await sync(deps, schedulesOf());
      const later = (await queue.getCompleted())
        .map((j) => Number(j.id!.slice(`repeat:${s!.id}:`.length)))
        .filter((m) => m !== missed);
      // None of the fire times that passed meanwhile was made up: every later run is after the return.
      expect(later.length).toBeGreaterThanOrEqual(1);
      for (const m of later) expect(m).toBeGreaterThan(returned);
      await eventually(async () => ((await queue.getActiveCount()) === 0 ? true : undefined));
    } finally {
      await queue.close();
    }
  });

  test('the queue that upserts uses the same strategy as the workers', async ({ deps }) => {
    const queues = scheduleQueues(deps);
    try {
      for (const q of queues.values()) expect(q.opts.settings?.repeatStrategy).toBe(repeatStrategy);
    } finally {
      await closeQueues(queues);
    }
  });
});
