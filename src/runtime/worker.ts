/**
 * The worker process's core: one BullMQ Worker per served queue, all sharing the injected deps, and a
 * bounded graceful shutdown.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { Worker, type Job } from 'bullmq';
import { catalog, isJobName, type JobName } from '../../queues/index.ts';
import { AuditDrain } from '../control/audit-drain.ts';
import { warnIfNotDurable } from '../redis.ts';
import type { AuditEvent } from '../control/audit-outbox.ts';
import { hasAnyPath, redactPaths, type JobEnvelope } from '../jobs/envelope.ts';
import { createFleetMetrics, type FleetMetrics } from '../metrics.ts';
import type { FleetDeps } from './deps.ts';
import type { AnyHandler } from './handler.ts';
import { InFlight } from './in-flight.ts';
import { sourceTemplates, type SourceTemplates } from '../storage/tenant-scope.ts';
import { longRunningAudit, processJob } from './process-job.ts';
import { repeatStrategy } from '../schedules/strategy.ts';

const FINAL_DRAIN_MS = 5_000;

export type HandlerCatalog = Record<JobName, AnyHandler | null>;

export interface WorkerOptions {
  handlers: HandlerCatalog;
  /** Queues to serve; every queue with a handler when absent. */
  queues?: string[] | undefined;
  /** Jobs in flight per queue in this process. */
  concurrency?: number;
  /** Where tenants' sources may be read from; the environment's templates when absent. */
  sources?: SourceTemplates;
  metrics?: FleetMetrics;
}

export interface FleetWorker {
  readonly queues: JobName[];
  readonly metrics: FleetMetrics;
  /** Resolves once every queue's BullMQ worker is connected. */
  readonly ready: Promise<void>;
  /**
   * Stops taking jobs, asks running handlers to stop at their next checkpoint (their jobs go back to
   * the queue), and resolves within `graceMs`; past that, remaining jobs are left to lock expiry.
   */
  close(graceMs?: number): Promise<void>;
}

/** How often a worker looks for jobs whose worker died (their lock expired). */
const MAX_STALLED_CHECK_MS = 5_000;

/**
 * A dead worker's job is taken over once its lock has expired and a stalled-jobs check has seen it:
 * within the lock duration plus one check interval. Checking only once per lock duration (BullMQ's
 * default) made that up to twice the lock duration.
 */
export function lockTimings(lockDurationMs: number): { lockDuration: number; stalledInterval: number } {
  return { lockDuration: lockDurationMs, stalledInterval: Math.min(lockDurationMs, MAX_STALLED_CHECK_MS) };
}

/**
 * Overwrites a job's sensitive paths once it has finished, completed or failed for good. Only after
 * BullMQ has recorded the outcome: redacted before, a delivery repeated after a lost acknowledgement
 * would find the payload gone.
 */
function redactOnceFinished(worker: Worker<JobEnvelope>, deps: FleetDeps, type: JobName): void {
  const redact = (job: Job<JobEnvelope> | undefined) => {
    // A job without any sensitive field (a load from a file) keeps its payload and can run again.
    if (!job?.data || job.data.redacted || !hasAnyPath(job.data.payload, catalog[type].sensitive)) return;
    const payload = redactPaths(job.data.payload, catalog[type].sensitive);
    job
      .updateData({ ...job.data, payload, redacted: true })
      .catch((err: unknown) =>
        deps.log.error(
          { err, queue: type, jobId: job.id },
          'could not remove personal data from a finished job',
        ),
      );
  };
  worker.on('completed', redact);
  // Also fired for attempts that will be retried: only a job that has finished for good is redacted.
  worker.on('failed', (job) => {
    if (job?.finishedOn) redact(job);
  });
}

export function servedQueues(handlers: HandlerCatalog, requested?: string[]): JobName[] {
  if (!requested) return (Object.keys(handlers) as JobName[]).filter((n) => handlers[n]);
  for (const name of requested) {
    if (!isJobName(name)) throw new Error(`unknown queue ${JSON.stringify(name)}`);
    if (!handlers[name]) throw new Error(`queue ${name} has no handler yet`);
  }
  return requested as JobName[];
}

export function startWorker(deps: FleetDeps, options: WorkerOptions): FleetWorker {
  const queues = servedQueues(options.handlers, options.queues);
  const metrics = options.metrics ?? createFleetMetrics();
  const shutdown = new AbortController();
  const inFlight = new InFlight<AuditEvent>({ onLongRunning: longRunningAudit(deps) });
  metrics.inFlightSources.add(inFlight);
  // Every worker process drains the audit outbox; a lock lets one at a time copy a batch.
  // On a connection of its own: its large stream reads must not delay the jobs' small writes.
  const drainRedis = deps.redis.duplicate();
  const auditDrain = new AuditDrain(drainRedis, deps.control.pool, deps.prefix, deps.log);
  auditDrain.start();
  const sources = options.sources ?? sourceTemplates(deps.env);
  const workers = queues.map((type) => {
    const handler = options.handlers[type]!;
    const worker = new Worker<JobEnvelope>(
      type,
      (job: Job<JobEnvelope>, token?: string) =>
        processJob(
          { deps, metrics, sources, shutdown: shutdown.signal, inFlight },
          type,
          handler,
          job,
          token,
        ),
      {
        // The connection the audit outbox appends on: a job's event is sent before its ack.
        connection: deps.redis,
        prefix: deps.prefix,
        concurrency: options.concurrency ?? 1,
        ...lockTimings(deps.env.DBFLEET_LOCK_DURATION_MS),
        // A job taken over after a crash resumes from its checkpoint, so a few stalls are harmless.
        maxStalledCount: 5,
        // A worker taking a scheduler's run computes the next one: the same rule as the sync's.
        settings: { repeatStrategy },
      },
    );
    worker.on('error', (err) => deps.log.error({ err, queue: type }, 'worker error'));
    if (catalog[type].redactWhenFinished) redactOnceFinished(worker, deps, type);
    return worker;
  });
  void warnIfNotDurable(deps.redis, deps.log);
  deps.log.info({ queues, concurrency: options.concurrency ?? 1 }, 'worker started');

  let closing: Promise<void> | undefined;
  return {
    queues,
    metrics,
    ready: Promise.all(workers.map((w) => w.waitUntilReady())).then(() => undefined),
    close(graceMs = deps.env.DBFLEET_SHUTDOWN_GRACE_MS) {
      closing ??= (async () => {
        const reason = new Error('worker shutting down');
        shutdown.abort(reason);
        inFlight.abortAll(reason);
        const graceful = Promise.all(workers.map((w) => w.close()));
        let timer: NodeJS.Timeout | undefined;
        const expired = new Promise<'expired'>(
          (resolve) => (timer = setTimeout(() => resolve('expired'), graceMs)),
        );
        const outcome = await Promise.race([graceful.then(() => 'closed' as const), expired]);
        clearTimeout(timer);
        if (outcome === 'expired') {
          deps.log.warn({ graceMs }, 'shutdown grace expired; leaving remaining jobs to lock expiry');
          await Promise.all(workers.map((w) => w.close(true)));
        }
        inFlight.stop();
        metrics.inFlightSources.delete(inFlight);
        // Copy this process's last audit events before it exits, for a few seconds at most: whatever
        // is left stays in Redis for the next worker's drainer.
        await Promise.race([
          deps.audit.flushed().then(() => auditDrain.close()),
          delay(FINAL_DRAIN_MS, undefined, { ref: false }),
        ]);
        drainRedis.disconnect();
        deps.log.info('worker stopped');
      })();
      return closing;
    },
  };
}
