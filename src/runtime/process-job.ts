/**
 * Runs one attempt of one job: validate again, audit, build the context, run the handler under a
 * timeout, and turn the outcome into what BullMQ needs (result, retry, fail at once, or hand back).
 */
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import { catalog, type JobName } from '../../queues/index.ts';
import { classifyError, InterruptedError } from '../errors.ts';
import { parsePayload, payloadDigest, redactPaths, tenantOf, type JobEnvelope } from '../jobs/envelope.ts';
import type { FleetMetrics } from '../metrics.ts';
import { tenantPostgres } from '../stores/postgres.ts';
import { redisCheckpoint } from './checkpoint.ts';
import type { JobContext } from './context.ts';
import type { FleetDeps } from './deps.ts';
import type { AnyHandler } from './handler.ts';

export interface ProcessOptions {
  deps: FleetDeps;
  metrics: FleetMetrics;
  fileRoots: readonly string[];
  /** Aborts when the worker shuts down: handlers stop at a checkpoint and the job is handed back. */
  shutdown: AbortSignal;
}

export async function processJob(
  opts: ProcessOptions,
  type: JobName,
  handler: AnyHandler,
  job: Job<JobEnvelope>,
  token: string | undefined,
): Promise<unknown> {
  const { deps, metrics } = opts;
  const contract = catalog[type];
  const started = performance.now();
  const attempt = job.attemptsMade + 1;
  const tenant = tenantOf(job.data?.payload);
  const log = deps.log.child({ queue: type, jobId: job.id, tenant, attempt });
  const audit = { prefix: deps.prefix, queue: type, jobId: job.id! };
  const finalAttempt = attempt >= (job.opts.attempts ?? 1);
  const redactData = () =>
    contract.redactWhenFinished
      ? job.updateData({ ...job.data, payload: redactPaths(job.data.payload, contract.sensitive) })
      : undefined;

  const timeout = AbortSignal.timeout(contract.policy.timeoutMs);
  const signal = AbortSignal.any([opts.shutdown, timeout]);
  metrics.inFlight.inc({ type, tenant });
  try {
    // Audit first, so that even a job with a payload no worker accepts leaves a record of why.
    await deps.control.jobStarted({
      ...audit,
      tenant,
      requestedBy: job.data?.requestedBy,
      payloadDigest: payloadDigest(job.data?.payload ?? null),
      attempt,
      enqueuedAt: new Date(job.timestamp),
    });
    const payload = parsePayload(type, job.data?.payload);
    if (tenant !== 'all') await deps.tenants.assertKnown(tenant);
    const location = deps.tenants.locate(tenant === 'all' ? 'control' : tenant);
    const ctx: JobContext = {
      job: { id: job.id!, queue: type, attempt, prefix: deps.prefix },
      tenant,
      log,
      signal,
      postgres: tenantPostgres(deps.postgres.pool(location.postgresUrl), location.namespace),
      mongo: deps.mongo.db(location.mongoUrl, location.namespace),
      objects: deps.objects,
      localObjects: deps.localObjects,
      s3: deps.s3,
      config: deps.config,
      fileRoots: opts.fileRoots,
      control: deps.control,
      progress: (value) => job.updateProgress(value),
      checkpoint: redisCheckpoint(
        deps.redis,
        `${deps.prefix}:${type}:${job.id}:checkpoint`,
        contract.policy.keepFailed.ageSeconds,
      ),
      throwIfInterrupted() {
        if (signal.aborted)
          throw new InterruptedError(timeout.aborted ? 'timed out' : 'worker shutting down');
      },
    };
    log.info('job started');
    const result = await handler(payload, ctx);
    const durationMs = performance.now() - started;
    await deps.control.jobEnded({ ...audit, status: 'completed', durationMs, resultSummary: result });
    await redactData();
    metrics.jobDuration.observe({ type, outcome: 'completed' }, durationMs / 1000);
    log.info({ durationMs: Math.round(durationMs) }, 'job completed');
    return result;
  } catch (err) {
    const durationMs = performance.now() - started;
    const c = classifyError(err);
    const handBack = opts.shutdown.aborted && c.code === 'interrupted' && token;
    const status = handBack ? 'interrupted' : c.kind === 'permanent' || finalAttempt ? 'failed' : 'retrying';
    log[status === 'failed' ? 'error' : 'warn']({ code: c.code, kind: c.kind, err }, `job ${status}`);
    metrics.failures.inc({ type, reason: c.code });
    await deps.control
      .jobEnded({ ...audit, status, durationMs, errorCode: c.code, errorMessage: c.message })
      .catch((auditErr: unknown) => log.error({ err: auditErr }, 'could not write the audit row'));
    if (handBack) {
      // Back to the wait list at once, without using up an attempt; another worker resumes it.
      await job.moveToWait(token);
      throw new WaitingError();
    }
    if (status === 'failed') {
      metrics.jobDuration.observe({ type, outcome: 'failed' }, durationMs / 1000);
      await Promise.resolve(redactData()).catch(() => undefined);
    }
    const reason = `[${c.code}] ${c.message}`;
    throw c.kind === 'permanent' ? new UnrecoverableError(reason) : new Error(reason);
  } finally {
    metrics.inFlight.dec({ type, tenant });
  }
}
