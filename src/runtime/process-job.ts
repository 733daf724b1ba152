/**
 * Runs one attempt of one job: validate again, audit, build the context, run the handler under a
 * timeout, and turn the outcome into what BullMQ needs (result, retry, fail at once, or hand back).
 */
import { UnrecoverableError, WaitingChildrenError, WaitingError, type Job } from 'bullmq';
import { catalog, type JobName } from '../../queues/index.ts';
import { classifyError, InterruptedError, PermanentError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { parsePayload, payloadDigest, redactPaths, tenantOf, type JobEnvelope } from '../jobs/envelope.ts';
import type { FleetMetrics } from '../metrics.ts';
import { tenantPostgres, type TenantPostgres } from '../stores/postgres.ts';
import { redisCheckpoint } from './checkpoint.ts';
import { fanOutFor } from './fan-out.ts';
import type { JobContext } from './context.ts';
import type { FleetDeps } from './deps.ts';
import type { AnyHandler } from './handler.ts';

const ACTIVE_AUDIT_AFTER_MS = 1_000;

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
  // Built on first use: a pino child costs more than a short job's whole run.
  let childLog: Logger | undefined;
  const log = () => (childLog ??= deps.log.child({ queue: type, jobId: job.id, tenant, attempt }));
  const auditBase = {
    prefix: deps.prefix,
    queue: type,
    jobId: job.id!,
    tenant,
    requestedBy: job.data?.requestedBy,
    payloadDigest: payloadDigest(job.data?.payload ?? null),
    attempt,
    enqueuedAt: new Date(job.timestamp),
    startedAt: new Date(),
  };
  const finalAttempt = attempt >= (job.opts.attempts ?? 1);
  const redactData = () =>
    contract.redactWhenFinished
      ? job.updateData({ ...job.data, payload: redactPaths(job.data.payload, contract.sensitive) })
      : undefined;

  // One controller per attempt, fired by the worker's shutdown or by the contract's timeout.
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort(new Error('timed out'));
  }, contract.policy.timeoutMs);
  const onShutdown = () => abort.abort(opts.shutdown.reason);
  if (opts.shutdown.aborted) onShutdown();
  else opts.shutdown.addEventListener('abort', onShutdown, { once: true });
  const signal = abort.signal;
  let activeAudit: NodeJS.Timeout | undefined;
  metrics.inFlight.inc({ type, tenant });
  try {
    // A job still running after a moment gets an 'active' audit row, so operators see long jobs in
    // flight. Short jobs skip it: their final row (written on every outcome, below) says it all, and
    // a second upsert per job would double the control database's load at high job rates.
    activeAudit = setTimeout(() => {
      deps.audit
        .record({ ...auditBase, status: 'active' })
        .catch((err: unknown) => log().warn({ err }, 'audit write failed'));
    }, ACTIVE_AUDIT_AFTER_MS);
    const payload = parsePayload(type, job.data?.payload);
    if (tenant !== 'all') await deps.tenants.assertKnown(tenant);
    const location = tenant === 'all' ? undefined : deps.tenants.locate(tenant);
    const scoped = () => {
      if (!location)
        throw new PermanentError('no_tenant', `a ${type} job for all tenants has no tenant store of its own`);
      return location;
    };
    let postgres: TenantPostgres | undefined;
    const ctx: JobContext = {
      job: { id: job.id!, queue: type, attempt, prefix: deps.prefix },
      tenant,
      get log() {
        return log();
      },
      signal,
      get postgres() {
        const at = scoped();
        return (postgres ??= tenantPostgres(deps.postgres.pool(at.postgresUrl), at.namespace));
      },
      get mongo() {
        const at = scoped();
        return deps.mongo.db(at.mongoUrl, at.namespace);
      },
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
      fanOut: fanOutFor(deps, job, token),
      deps,
      requestedBy: job.data?.requestedBy,
      throwIfInterrupted() {
        if (signal.aborted) throw new InterruptedError(timedOut ? 'timed out' : 'worker shutting down');
      },
    };
    if (deps.log.isLevelEnabled('info')) log().info('job started');
    const result = await handler(payload, ctx);
    const durationMs = performance.now() - started;
    // Awaited: a job is acknowledged only once its audit row is durable.
    await deps.audit.record({
      ...auditBase,
      status: 'completed',
      durationMs,
      resultSummary: result,
      finishedAt: new Date(),
    });
    await redactData();
    metrics.jobDuration.observe({ type, outcome: 'completed' }, durationMs / 1000);
    if (deps.log.isLevelEnabled('info')) log().info({ durationMs: Math.round(durationMs) }, 'job completed');
    return result;
  } catch (err) {
    // Parked until its child jobs finish (fan-out): not a failure; BullMQ runs it again after.
    if (err instanceof WaitingChildrenError) throw err;
    const durationMs = performance.now() - started;
    const c = classifyError(err);
    const handBack = opts.shutdown.aborted && c.code === 'interrupted' && token;
    const status = handBack ? 'interrupted' : c.kind === 'permanent' || finalAttempt ? 'failed' : 'retrying';
    log()[status === 'failed' ? 'error' : 'warn']({ code: c.code, kind: c.kind, err }, `job ${status}`);
    metrics.failures.inc({ type, reason: c.code });
    await deps.audit
      .record({
        ...auditBase,
        status,
        durationMs,
        errorCode: c.code,
        errorMessage: c.message,
        finishedAt: status === 'failed' ? new Date() : undefined,
      })
      .catch((auditErr: unknown) => log().error({ err: auditErr }, 'could not write the audit row'));
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
    clearTimeout(timer);
    clearTimeout(activeAudit);
    opts.shutdown.removeEventListener('abort', onShutdown);
    metrics.inFlight.dec({ type, tenant });
  }
}
