/**
 * Worker processes starting together, and one restarting in a loop (kill -9 during and right after
 * its sync), reconcile the same config: one scheduler per schedule and tenant, each upserted once,
 * one pending run each. Then the CLI: sync, list, tenants add and remove, a schedule removed from the
 * config.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { defineConfig, type ScheduleConfig } from '../../src/config/define.ts';
import type { FleetDeps } from '../../src/runtime/deps.ts';
import { defineScheduler, schedulerId } from '../../src/schedules/definitions.ts';
import { closeQueues, readSchedulers, scheduleQueues } from '../../src/schedules/plan.ts';
import { nextRun } from '../../src/schedules/strategy.ts';
import { checkedSchedules, leaseKey } from '../../src/schedules/sync.ts';
import { cliFor } from '../support/cli.ts';
import { dropTenantData, tenantStores } from '../../src/control/provision.ts';
import { eventually, ROOT, test, uniqueId, type SpawnedWorker } from '../support/fixtures.ts';

/** Patterns at least eleven hours away, so that no run fires while the test looks. */
function farPatterns(): { daily: string; weekly: string } {
  const hour = (new Date().getUTCHours() + 12) % 24;
  return { daily: `0 ${hour} * * *`, weekly: `30 ${hour} * * ${(new Date().getUTCDay() + 3) % 7}` };
}

async function writeConfig(file: string, schedules: ScheduleConfig[]): Promise<void> {
  defineConfig({ schedules }); // what the workers will load must pass
  const define = path.join(ROOT, 'src/config/define.ts');
  await writeFile(
    file,
    `import { defineConfig } from ${JSON.stringify(define)};\nexport default defineConfig(${JSON.stringify({ schedules })});\n`,
  );
}

/** Resolves once the process has logged how its start-up sync ended. */
const syncEnded = (w: SpawnedWorker) =>
  eventually(
    async () =>
      /"msg":"(schedules synced|schedules in sync \(synced by another process\)|schedules sync at start failed[^"]*|schedules not synced at start[^"]*)"/.exec(
        w.output(),
      )?.[1],
    30_000,
    20,
  );

/** How many times each job of our schedulers was added to the queue: one per upsert. */
async function additions(deps: FleetDeps, queue: string): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const [, fields] of await deps.redis.xrange(`${deps.prefix}:${queue}:events`, '-', '+')) {
    const event = Object.fromEntries(fields.flatMap((f, i) => (i % 2 === 0 ? [[f, fields[i + 1]]] : [])));
    if (event.event !== 'added' || !event.jobId?.startsWith('repeat:dbfleet:')) continue;
    const scheduler = event.jobId.slice('repeat:'.length, event.jobId.lastIndexOf(':'));
    counts.set(scheduler, (counts.get(scheduler) ?? 0) + 1);
  }
  return counts;
}

test(
  'three workers starting at once and one crash-looping: one scheduler per schedule and tenant, each upserted once',
  { timeout: 300_000 },
  async ({ deps, env, tmp, tenant, spareTenant, spawnWorker }) => {
    const spares = [await spareTenant(), await spareTenant()];
    const registered = (await deps.control.listTenants())
      .filter((t) => t.status === 'active')
      .map((t) => t.id);
    const { daily, weekly } = farPatterns();
    const schedules: ScheduleConfig[] = [
      {
        name: 'nightly_backup',
        job: 'backup',
        cron: daily,
        timeZone: 'Europe/Paris',
        tenants: 'all',
        payload: { destination: 'local' },
        spreadMinutes: 30,
      },
      {
        name: 'weekly_validate',
        job: 'validate',
        cron: weekly,
        timeZone: 'UTC',
        tenants: [tenant.id, spares[0]!.id],
      },
    ];
    const config = path.join(tmp, 'dbfleet.config.ts');
    await writeConfig(config, schedules);
    const workerEnv = { env: { DBFLEET_CONFIG: config } };
    const expected = [
      ...registered.map((t) => schedulerId('nightly_backup', t)),
      schedulerId('weekly_validate', tenant.id),
      schedulerId('weekly_validate', spares[0]!.id),
    ].sort();

    const start = Date.now();
    // Three at the same moment, and the first of the crash loop's starts with them, killed at once.
    const looping = spawnWorker(workerEnv);
    const three = await Promise.all([spawnWorker(workerEnv), spawnWorker(workerEnv), spawnWorker(workerEnv)]);
    const crashes: string[] = [];
    const kill = async (w: SpawnedWorker) => {
      w.proc.kill('SIGKILL');
      await w.exited;
      crashes.push(w.output());
    };
    await kill(await looping);
    const outcomes = await Promise.all(three.map(syncEnded));
    expect(outcomes.every((o) => o === 'schedules synced' || o.startsWith('schedules in sync'))).toBe(true);
    // Then four more starts: killed while holding the sync lease (mid-sync), then started again
    // while that dead process's lease still stands, and killed right after its sync.
    let killedHolding = 0;
    for (let i = 0; i < 2; i++) {
      const holder = await spawnWorker(workerEnv);
      for (let tries = 0; tries < 20_000 && !(await deps.redis.exists(leaseKey(deps.prefix))); tries++);
      await kill(holder);
      if (await deps.redis.exists(leaseKey(deps.prefix))) killedHolding++;
      const next = await spawnWorker(workerEnv);
      await syncEnded(next);
      await kill(next);
    }
    expect(killedHolding).toBeGreaterThan(0);
    await eventually(async () => (await deps.redis.exists(leaseKey(deps.prefix))) === 0, 15_000);
    const end = Date.now();

    const queues = scheduleQueues(deps);
    try {
      const found = await readSchedulers(deps, queues);
      expect(found.map((s) => s.id).sort()).toEqual(expected);
      const checked = checkedSchedules(defineConfig({ schedules }));
      for (const s of found) {
        const wanted = defineScheduler(
          checked.find((c) => c.name === s.schedule)!,
          s.tenant,
        );
        expect(s).toMatchObject({
          definition: wanted.definition,
          pattern: wanted.repeat.pattern,
          pending: true,
        });
        expect([nextRun(wanted.timing, start), nextRun(wanted.timing, end)]).toContain(s.next);
      }
      for (const [queue, q] of [...queues].filter(([n]) => n === 'backup' || n === 'validate')) {
        const mine = found.filter((s) => s.queue === queue);
        // No duplicate pending runs, nothing else queued.
        expect((await q.getDelayed()).map((j) => j.id).sort()).toEqual(
          mine.map((s) => `repeat:${s.id}:${s.next}`).sort(),
        );
        expect(await q.getJobCounts('wait', 'active', 'completed', 'failed', 'prioritized')).toEqual({
          wait: 0,
          active: 0,
          completed: 0,
          failed: 0,
          prioritized: 0,
        });
        // Each scheduler's job was added exactly once: eight starts, one upsert each.
        expect(Object.fromEntries(await additions(deps, queue))).toEqual(
          Object.fromEntries(mine.map((s) => [s.id, 1])),
        );
      }
    } finally {
      await closeQueues(queues);
    }
    // The processes' own accounts agree: none changed or removed anything, and those that lived to
    // say so added no more than there are schedulers (one killed mid-sync may have added some).
    const reports = [...three.map((w) => w.output()), ...crashes].flatMap((o) =>
      [...o.matchAll(/\{[^\n]*"msg":"schedules synced"\}/g)].map(
        (m) => JSON.parse(m[0]) as Record<string, number>,
      ),
    );
    expect(reports.length).toBeGreaterThanOrEqual(3);
    for (const r of reports) expect(r).toMatchObject({ changed: 0, removed: 0, failed: 0 });
    expect(reports.reduce((n, r) => n + r.added!, 0)).toBeLessThanOrEqual(expected.length);

    // The CLI: a sync now changes nothing; list shows each in sync, with its next run.
    const cli = cliFor(env, { DBFLEET_CONFIG: config });
    const again = JSON.parse((await cli('schedules', 'sync')).stdout) as Record<string, unknown>;
    expect(again).toMatchObject({
      added: [],
      changed: [],
      removed: [],
      unchanged: expected.length,
      failed: [],
    });
    const rows = JSON.parse((await cli('schedules', 'list')).stdout) as { status: string; next: string }[];
    expect(rows).toHaveLength(expected.length);
    expect(rows.every((r) => r.status === 'in sync' && Date.parse(r.next) > end)).toBe(true);

    // A tenant added later gets its schedulers from `tenants add` itself.
    const late = uniqueId('late');
    try {
      const { stderr } = await cli('tenants', 'add', late, '--no-migrate');
      expect(stderr).toContain('schedules synced: 1 added, 0 changed, 0 removed');
      expect((await cli('tenants', 'remove', late)).stderr).toContain(
        'schedules synced: 0 added, 0 changed, 1 removed',
      );
      await cli('tenants', 'add', late, '--no-migrate');
      // A schedule gone from the config goes at the next sync; the other stays as it was.
      await writeConfig(config, [schedules[0]!]);
      const fewer = JSON.parse((await cli('schedules', 'sync')).stdout) as {
        removed: { schedule: string; tenant: string }[];
        unchanged: number;
      };
      expect(fewer.removed.map((r) => `${r.schedule}/${r.tenant}`).sort()).toEqual(
        [`weekly_validate/${spares[0]!.id}`, `weekly_validate/${tenant.id}`].sort(),
      );
      expect(fewer.unchanged).toBe(registered.length + 1);
    } finally {
      await dropTenantData(tenantStores(deps, late));
      await deps.control.forgetTenant(late);
    }
  },
);
