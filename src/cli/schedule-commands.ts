/**
 * `dbfleet schedules sync|list`, and the sync `tenants add` and `tenants remove` run after changing
 * the tenants (a schedule for all tenants gains or loses one).
 */
import type { Command } from 'commander';
import type { FleetDeps } from '../runtime/deps.ts';
import { withDeps } from './bootstrap.ts';
import { print } from './enqueue.ts';

/** How long a command waits for another process's sync before it reports the lease busy. */
const LEASE_WAIT_MS = 15_000;

async function sync(deps: FleetDeps, waitMs: number) {
  const { syncSchedules } = await import('../schedules/sync.ts');
  const outcome = await syncSchedules(deps, { waitMs });
  if (outcome.status === 'busy')
    throw new Error(
      `another process is syncing the schedules (its lease runs ${Math.ceil(outcome.heldForMs / 1000)} s more); try again`,
    );
  return outcome.report;
}

/**
 * After tenants changed: sync, and say on stderr what changed (stdout stays the command's own). The
 * tenants did change, so a busy lease is a warning, not a failure: the next sync catches up.
 */
export async function syncAfterTenantChange(deps: FleetDeps): Promise<void> {
  if ((deps.config.schedules ?? []).length === 0) return;
  const { syncSchedules } = await import('../schedules/sync.ts');
  const outcome = await syncSchedules(deps, { waitMs: LEASE_WAIT_MS });
  if (outcome.status === 'busy') {
    console.error(
      'schedules not synced: another process holds the lease; run dbfleet schedules sync (worker starts sync too)',
    );
    return;
  }
  const r = outcome.report;
  const counts = `${r.added.length} added, ${r.changed.length} changed, ${r.removed.length} removed`;
  console.error(`schedules synced: ${counts}, ${r.unchanged} unchanged`);
  for (const f of r.failed) console.error(`schedule ${f.schedule} for ${f.tenant}: not written: ${f.error}`);
  if (r.failed.length > 0) process.exitCode = 1;
}

export function registerScheduleCommands(program: Command, int: (v: string) => number): void {
  const schedules = program
    .command('schedules')
    .description("the config module's schedules, as BullMQ job schedulers");
  schedules
    .command('sync')
    .description(
      'create, change and remove job schedulers to match the config (prints added, changed, removed, unchanged)',
    )
    .option('--wait <ms>', "how long to wait for another process's sync", int, LEASE_WAIT_MS)
    .action((o: { wait: number }) =>
      withDeps(async (deps) => {
        const report = await sync(deps, o.wait);
        print(report);
        if (report.failed.length > 0) process.exitCode = 1;
      }),
    );
  schedules
    .command('list')
    .description('each scheduler: schedule, job, tenant, cron, zone, next run (UTC and local), status')
    .action(() =>
      withDeps(async (deps) => {
        const { listSchedules } = await import('../schedules/list.ts');
        print(await listSchedules(deps));
      }),
    );
}
