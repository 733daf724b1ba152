/**
 * `dbfleet migrate status|up|down|repair|baseline`: enqueues a migrate job (or runs in this process
 * with --local) and prints one row per tenant and store. Exits 1 when a tenant failed.
 */
import type { Command } from 'commander';
import type { PayloadInput, Result } from '../../queues/index.ts';
import { classifyError } from '../errors.ts';
import { withClient, withDeps } from './bootstrap.ts';

type Verb = 'status' | 'up' | 'down' | 'repair' | 'baseline';
interface Options {
  tenant?: string;
  all?: boolean;
  to?: string;
  store: 'postgres' | 'mongo' | 'both';
  dryRun?: boolean;
  local?: boolean;
  timeout: number;
}

function payloadFor(verb: Verb, o: Options): PayloadInput<'migrate'> {
  if (Boolean(o.tenant) === Boolean(o.all)) throw new Error('give exactly one of --tenant <id> or --all');
  return {
    tenant: o.all ? 'all' : o.tenant!,
    store: o.store,
    ...(o.to ? { to: o.to } : {}),
    direction: verb === 'down' ? 'down' : 'up',
    dryRun: Boolean(o.dryRun),
    action: verb === 'up' || verb === 'down' ? 'apply' : verb,
  };
}

export function printMigrateResult(result: Result<'migrate'>): void {
  console.table(
    result.tenants.map((r) =>
      'applied' in r
        ? {
            tenant: r.tenant,
            store: r.store,
            status: r.status,
            version: r.current ?? '-',
            [result.dryRun ? 'would run' : 'ran']: [...r.applied, ...r.reverted].join(' ') || '-',
            pending: r.pending.length,
            drifted: r.drifted.map((d) => `${d.file} (${d.reason})`).join(' ') || '-',
            repaired: r.repaired.join(' ') || '-',
          }
        : { tenant: r.tenant, store: r.store, status: r.status, error: r.error },
    ),
  );
  const { tenants, ok, failed } = result.summary;
  console.log(`${tenants} tenant(s): ${ok} ok, ${failed} failed`);
}

async function runLocal(payload: PayloadInput<'migrate'>): Promise<Result<'migrate'>> {
  const [{ parsePayload }, { migrateTenant }, { storeRows, summarise }] = await Promise.all([
    import('../jobs/envelope.ts'),
    import('../migrations/migrator.ts'),
    import('../migrations/result.ts'),
  ]);
  const p = parsePayload('migrate', payload);
  return withDeps(async (deps) => {
    const ids = p.tenant === 'all' ? (await deps.control.listTenants()).map((t) => t.id) : [p.tenant];
    const rows: Result<'migrate'>['tenants'] = [];
    for (const tenant of ids) {
      try {
        await deps.tenants.assertKnown(tenant);
        const out = await migrateTenant(deps, tenant, {
          ...p,
          jobId: null,
          requestedBy: process.env.USER ?? 'cli',
        });
        rows.push(...storeRows(tenant, out.stores));
      } catch (err) {
        rows.push({ tenant, store: p.store, status: 'failed', error: classifyError(err).message });
      }
    }
    return summarise(p, rows);
  });
}

export function registerMigrate(program: Command, int: (v: string) => number): void {
  const migrate = program.command('migrate').description('versioned migrations of tenant stores');
  const verbs: [Verb, string][] = [
    ['status', 'applied, pending and drifted migrations per tenant and store'],
    ['up', 'apply pending migrations (to --to, else the latest)'],
    ['down', 'revert migrations above --to'],
    ['repair', 'accept edited applied migrations (re-record checksums) and forget missing ones'],
    ['baseline', 'adopt an existing tenant: record migrations up to --to as applied without running them'],
  ];
  for (const [verb, description] of verbs) {
    migrate
      .command(verb)
      .description(description)
      .option('--tenant <id>', 'one tenant')
      .option('--all', 'every tenant (one child job each)')
      .option('--to <version>', 'target version')
      .option('--store <store>', 'postgres, mongo or both', 'both')
      .option('--dry-run', 'print the plan, change nothing')
      .option('--local', 'run in this process instead of enqueueing a job')
      .option('--timeout <ms>', 'give up waiting for the job after this long', int, 3_600_000)
      .action(async (o: Options) => {
        const payload = payloadFor(verb, o);
        const result = o.local
          ? await runLocal(payload)
          : await withClient(async (client) => {
              const job = await client.enqueue('migrate', payload, {
                requestedBy: process.env.USER ?? 'cli',
              });
              console.error(`migrate job ${job.id} enqueued; waiting for it`);
              return job.waitForResult({ timeoutMs: o.timeout });
            });
        printMigrateResult(result);
        if (result.summary.failed > 0) process.exitCode = 1;
      });
  }
}
