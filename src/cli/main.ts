#!/usr/bin/env node
/**
 * `dbfleet`: the operator's and developer's command line. Every command is built on the client or deps.
 * Commands import what they need when they run, so a worker process does not carry the board's
 * Express and Bull Board, nor the demo generator, in memory.
 */
import type { Dataset } from '../../demo/generate.ts';
import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { Job } from 'bullmq';
import { isLegacyRunId, runIdOf, type JobEnvelope } from '../jobs/envelope.ts';
import { isJobName, jobNames, type JobName } from '../../queues/index.ts';
import { JOB_STATES, type JobState } from '../board/job-states.ts';
import { closeDeps } from '../runtime/deps.ts';
import { bootstrap, onShutdownSignal, withClient, withDeps } from './bootstrap.ts';
import { registerBackupCommands } from './backup-commands.ts';
import { registerCleanupCommands } from './cleanup-commands.ts';
import { registerEraseCommands } from './erase-commands.ts';
import { registerExportCommands } from './export-commands.ts';
import { registerMigrate } from './migrate-command.ts';
import { registerScheduleCommands, syncAfterTenantChange } from './schedule-commands.ts';

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number');
  return n;
};
const jobType = (v: string): JobName => {
  if (!isJobName(v)) throw new InvalidArgumentError(`must be one of ${jobNames.join(', ')}`);
  return v;
};
const print = (value: unknown) =>
  console.log(typeof value === 'string' ? value : JSON.stringify(value, null, 2));

const program = new Command('dbfleet').description(
  'Job-queue worker fleet for multi-tenant database operations',
);

program
  .command('worker')
  .description('run jobs from the queues (all queues with a handler by default)')
  .option('--queues <names>', 'comma-separated queues to serve', (v) => v.split(','))
  .option('--concurrency <n>', 'jobs in flight per queue', int, 2)
  .option('--metrics-port <port>', "serve this worker's Prometheus metrics on 127.0.0.1:<port>", int)
  .option('--no-schedules', "do not sync the config's schedules at start")
  .action(async (o: { queues?: string[]; concurrency: number; metricsPort?: number; schedules: boolean }) => {
    const [
      { startWorker },
      { handlers },
      { createServer },
      { createFleetMetrics },
      { syncSchedulesAtStart },
    ] = await Promise.all([
      import('../runtime/worker.ts'),
      import('../../workers/index.ts'),
      import('node:http'),
      import('../metrics.ts'),
      import('../schedules/at-start.ts'),
    ]);
    const deps = await bootstrap();
    // The metrics port listens before the worker starts (and says "worker started"), so whoever
    // waits for that line can scrape at once, and a port in use fails before any job is taken.
    const metrics = createFleetMetrics({ audit: deps });
    const metricsServer =
      o.metricsPort === undefined
        ? undefined
        : createServer(async (_req, res) => {
            res.setHeader('content-type', metrics.registry.contentType);
            res.end(await metrics.registry.metrics());
          });
    if (metricsServer)
      await new Promise<void>((resolve, reject) =>
        metricsServer.once('error', reject).listen(o.metricsPort, '127.0.0.1', resolve),
      );
    const worker = startWorker(deps, { handlers, queues: o.queues, concurrency: o.concurrency, metrics });
    // Every worker start is a sync point: whichever starting worker holds the lease reconciles.
    const stopSync = new AbortController();
    const synced = o.schedules ? syncSchedulesAtStart(deps, deps.log, stopSync.signal) : Promise.resolve();
    onShutdownSignal(async () => {
      metricsServer?.close();
      stopSync.abort();
      // A sync under way finishes its write; one stuck on an unreachable Redis does not hold the exit.
      await Promise.race([synced, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
      await worker.close();
      await closeDeps(deps);
    });
  });

program
  .command('board')
  .description('serve Bull Board, /healthz, /readyz and /metrics')
  .option('--host <host>', 'address to listen on (DBFLEET_BOARD_HOST)')
  .option('--port <port>', 'port (DBFLEET_BOARD_PORT)', int)
  .action(async (o: { host?: string; port?: number }) => {
    const { startBoard } = await import('../board/server.ts');
    const deps = await bootstrap();
    const running = await startBoard(
      deps,
      o.host ?? deps.env.DBFLEET_BOARD_HOST,
      o.port ?? deps.env.DBFLEET_BOARD_PORT,
    ).catch(async (err: unknown) => {
      await closeDeps(deps);
      throw err;
    });
    deps.log.info({ url: running.url }, `board at ${running.url}/board`);
    onShutdownSignal(async () => {
      await running.close();
      await closeDeps(deps);
    });
  });

program
  .command('enqueue')
  .description('enqueue a job: payload as JSON, or @file.json')
  .argument('<type>', 'job type', jobType)
  .argument('<payload>', 'JSON payload or @path')
  .option('--key <idempotencyKey>', 'idempotency key: the same key gives the same job')
  .option('--requested-by <who>', 'recorded in the audit log')
  .option('--priority <n>', 'BullMQ priority (1 is highest)', int)
  .option('--wait', 'wait for the result and print it with the id')
  .option('--timeout <ms>', 'with --wait: give up after this long', int, 600_000)
  .action(
    async (
      type: JobName,
      raw: string,
      o: { key?: string; requestedBy?: string; priority?: number; wait?: boolean; timeout: number },
    ) => {
      const text = raw.startsWith('@') ? await readFile(raw.slice(1), 'utf8') : raw;
      await withClient(async (client) => {
        const job = await client.enqueue(type, JSON.parse(text), {
          idempotencyKey: o.key,
          requestedBy: o.requestedBy ?? process.env.USER,
          priority: o.priority,
        });
        // One JSON document on stdout, so that it parses as a whole; the id goes to stderr at once,
        // for whoever waits long or sees the job fail.
        if (!o.wait) return print({ type, id: job.id });
        console.error(`${type} job ${job.id} enqueued; waiting for it`);
        print({ type, id: job.id, result: await job.waitForResult({ timeoutMs: o.timeout }) });
      });
    },
  );

const tenants = program.command('tenants').description('manage tenants');
tenants
  .command('add')
  .description('register tenants, create their PostgreSQL schema and MongoDB database, migrate them')
  .argument('<ids...>')
  .option('--no-migrate', 'do not bring the new stores to the latest migration')
  .action(async (ids: string[], o: { migrate: boolean }) => {
    const { addTenant } = await import('../control/provision.ts');
    await withDeps(async (deps) => {
      for (const id of ids) {
        const { created, namespace, migrated } = await addTenant(deps, id, {
          migrate: o.migrate,
          requestedBy: process.env.USER ?? 'cli',
        });
        const at = migrated?.stores.map((s) => `${s.store} at ${s.current ?? 'none'}`).join(', ');
        print(
          `${id}: ${created ? 'added' : 'already present'} (schema and database ${namespace}${at ? `; ${at}` : ''})`,
        );
      }
      // Schedules for all tenants gain the new ones now rather than at the next worker start.
      await syncAfterTenantChange(deps);
    });
  });
tenants
  .command('remove')
  .description('unregister tenants, so that their jobs are refused; their data stays unless --drop-data')
  .argument('<ids...>')
  .option('--drop-data', 'also drop their PostgreSQL schema and MongoDB database (needs --confirm)')
  .option('--confirm', 'with --drop-data: really drop; without it, print what would be dropped and exit 2')
  .action(async (ids: string[], o: { dropData?: boolean; confirm?: boolean }) => {
    const { removeTenants } = await import('./tenants-remove.ts');
    await withDeps(async (deps) => {
      const options = { dropData: Boolean(o.dropData), confirm: Boolean(o.confirm) };
      process.exitCode = await removeTenants(deps, ids, options);
      if (process.exitCode === 0) await syncAfterTenantChange(deps);
    });
  });
tenants
  .command('list')
  .description('list tenants')
  .action(() => withDeps(async (deps) => print(await deps.control.listTenants())));

const queues = program.command('queues').description('inspect and control queues');
queues
  .command('list')
  .description('job counts per queue and state')
  .action(() =>
    withClient(async (client) => {
      const rows = await Promise.all(
        jobNames.map(async (n) => ({
          queue: n,
          paused: await client.queue(n).isPaused(),
          ...(await client.queue(n).getJobCounts()),
        })),
      );
      console.table(rows);
    }),
  );
for (const action of ['pause', 'resume'] as const) {
  queues
    .command(action)
    .description(`${action} a queue for every worker`)
    .argument('<type>', 'queue', jobType)
    .action((type: JobName) =>
      withClient(async (client) => {
        await client.queue(type)[action]();
        print(`${type}: ${action === 'pause' ? 'paused' : 'resumed'}`);
      }),
    );
}

const jobs = program.command('jobs').description('inspect, retry and remove jobs');
jobs
  .command('list')
  .argument('<type>', 'queue', jobType)
  .addOption(new Option('--state <state>', 'jobs in this state').choices(JOB_STATES).default('failed'))
  .option('--limit <n>', 'at most this many', int, 20)
  .action((type: JobName, o: { state: JobState; limit: number }) =>
    withClient(async (client) => {
      const list = await client.queue(type).getJobs([o.state], 0, o.limit - 1);
      console.table(
        list.map((j) => ({
          id: j.id,
          name: j.name,
          attempts: j.attemptsMade,
          failedReason: j.failedReason,
        })),
      );
    }),
  );
jobs
  .command('show')
  .description("a job's state, progress, result or failure, and its audit row")
  .argument('<type>', 'queue', jobType)
  .argument('<id>')
  .action((type: JobName, id: string) =>
    withClient(async (client, deps) => {
      const job = (await client.queue(type).getJob(id)) as Job<JobEnvelope> | undefined;
      // The audit row of the run Redis holds; with no job there, of the latest run under this id.
      // A scheduler's run has its run id from its job id, not its data.
      let runId: string | undefined;
      try {
        runId = job ? runIdOf(job.data, deps.prefix, id, job.repeatJobKey) : undefined;
      } catch {
        runId = undefined; // an envelope the worker would refuse: show the job as it is
      }
      if (runId && isLegacyRunId(runId)) runId = undefined;
      print({
        state: job ? await job.getState() : 'not in Redis (removed, or past its retention)',
        runId,
        progress: job?.progress,
        result: job?.returnvalue,
        failedReason: job?.failedReason,
        audit: await deps.control.jobRun(deps.prefix, type, id, runId),
      });
    }),
  );
for (const action of ['retry', 'remove'] as const) {
  jobs
    .command(action)
    .argument('<type>', 'queue', jobType)
    .argument('<id>')
    .action((type: JobName, id: string) =>
      withClient(async (client) => {
        const job = await client.queue(type).getJob(id);
        if (!job) throw new Error(`no job ${id} in ${type}`);
        await (action === 'retry' ? job.retry() : job.remove());
        print(`${type} ${id}: ${action === 'retry' ? 'retrying' : 'removed'}`);
      }),
    );
}

registerMigrate(program, int);
registerBackupCommands(program, int);
registerCleanupCommands(program, int);
registerEraseCommands(program, int);
registerExportCommands(program, int);
registerScheduleCommands(program, int);

const demo = program.command('demo').description('the demo music-streaming app');
demo
  .command('generate')
  .description('write deterministic synthetic data as NDJSON or CSV')
  .requiredOption('--dataset <name>', 'users, playlists, listening_events or sessions')
  .requiredOption('--out <file>', 'where to write')
  .option('--seed <n>', 'random seed', int, 42)
  .option('--scale <rows>', 'number of rows', int, 1000)
  .option('--bad-rate <fraction>', 'fraction of rows made invalid on purpose', Number, 0)
  .option('--format <format>', 'ndjson or csv', 'ndjson')
  .action(
    async (o: {
      dataset: Dataset;
      out: string;
      seed: number;
      scale: number;
      badRate: number;
      format: 'ndjson' | 'csv';
    }) => {
      const { generateFile } = await import('../../demo/generate.ts');
      const n = await generateFile(o.out, {
        dataset: o.dataset,
        seed: o.seed,
        scale: o.scale,
        badRate: o.badRate,
        format: o.format,
      });
      print(`${o.out}: ${n} ${o.dataset}`);
    },
  );

program.parseAsync().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
