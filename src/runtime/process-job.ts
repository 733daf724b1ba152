/**
 * Runs one attempt of one job: validate again, audit, build the context, run the handler under a
 * timeout, and turn the outcome into what BullMQ needs (result, retry, fail at once, or hand back).
 */
import { UnrecoverableError, WaitingChildrenError, WaitingError, type Job } from 'bullmq';
import { catalog, type JobName } from '../../queues/index.ts';
import { classifyError, PermanentError, TransientError } from '../errors.ts';
import {
  checkEnvelope,
  isLegacyRunId,
  parsePayload,
  payloadDigest,
  runIdOf,
  tenantOf,
  type JobEnvelope,
} from '../jobs/envelope.ts';
import type { AuditEvent } from '../control/audit-outbox.ts';
import type { FleetMetrics } from '../metrics.ts';
import { AttemptContext } from './attempt-context.ts';
import type { FleetDeps } from './deps.ts';
import type { AnyHandler } from './handler.ts';
import type { InFlight } from './in-flight.ts';
import type { SourceTemplates } from '../storage/tenant-scope.ts';

export interface ProcessOptions {
  deps: FleetDeps;
  metrics: FleetMetrics;
  sources: SourceTemplates;
  /** Aborted when the worker shuts down: handlers stop at a checkpoint and the job is handed back. */
  shutdown: AbortSignal;
  /** Fires timeouts and shutdown aborts for this process's running jobs; started with their audit event. */
  inFlight: InFlight<AuditEvent>;
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
  const attempt = job.attemptsMade + 1;
  const tenant = tenantOf(job.data?.payload);
  // One event object per attempt: the final event fills in its outcome (a copy per event was a
  // measurable share of a no-op job's cost). Every field is set here, the outcome's too, so that all
  // events share one object shape: adding fields later cost as much as building the object.
  const event: AuditEvent = {
    prefix: deps.prefix,
    queue: type,
    jobId: job.id!,
    runId: undefined,
    tenant,
    requestedBy: typeof job.data?.requestedBy === 'string' ? job.data.requestedBy : undefined,
    // Jobs from older producers carry no digest: computed below, once the payload has passed.
    payloadDigest: typeof job.data?.digest === 'string' ? job.data.digest : '',
    status: 'active',
    at: 0,
    attempt,
    enqueuedAt: job.timestamp,
    startedAt: Date.now(),
    durationMs: undefined,
    resultSummary: undefined,
    errorCode: undefined,
    errorMessage: undefined,
  };
  const finalAttempt = attempt >= (job.opts.attempts ?? 1);

  // The sweeper fires the timeout, and records an 'active' event for a job still running after a
  // second (see longRunningAudit).
  const running = opts.inFlight.start(type, tenant, contract.policy.timeoutMs, event);
  if (opts.shutdown.aborted) running.abort(opts.shutdown.reason);
  // The run id is the context's from the start (its checkpoints and records are keyed by it); an
  // envelope without a valid one fails below, before the handler runs.
  let envelopeError: unknown;
  let runId = '';
  try {
    checkEnvelope(job.data);
    // A job scheduler's run (repeatJobKey set) gets a run id of its own, derived from its job id.
    runId = runIdOf(job.data, deps.prefix, job.id!, job.repeatJobKey);
  } catch (err) {
    envelopeError = err;
  }
  // Jobs queued before run ids get none in the audit log, like their earlier events.
  event.runId = runId && !isLegacyRunId(runId) ? runId : undefined;
  const ctx = new AttemptContext(deps, type, tenant, job, token, running, opts.sources, runId);
  try {
    if (envelopeError) throw envelopeError;
    if (job.data.redacted)
      throw new PermanentError(
        'payload_redacted',
        `this ${type} job finished and its personal data was removed from it: enqueue it anew`,
      );
    const payload = parsePayload(type, job.data?.payload);
    if (!event.payloadDigest) event.payloadDigest = payloadDigest(type, payload);
    // The cached answer without an await: most jobs are for tenants this worker has seen.
    if (tenant !== 'all' && !deps.tenants.isKnown(tenant)) await deps.tenants.assertKnown(tenant);
    if (deps.log.isLevelEnabled('info')) ctx.log.info('job started');
    const result = await handler(payload, ctx);
    const durationMs = performance.now() - running.startedAt;
    event.status = 'completed';
    event.at = Date.now();
    event.durationMs = durationMs;
    event.resultSummary = result;
    try {
      // Resolves once the append is sent: before the acknowledgement BullMQ sends when this returns.
      await deps.audit.record(event);
    } catch (err) {
      // Not acknowledged without its audit event: retried like any transient fault.
      throw new TransientError('audit_unavailable', `could not write the audit event: ${String(err)}`);
    }
    metrics.jobDuration.observe({ type, outcome: 'completed' }, durationMs / 1000);
    if (deps.log.isLevelEnabled('info'))
      ctx.log.info({ durationMs: Math.round(durationMs) }, 'job completed');
    return result;
  } catch (err) {
    // Parked until its child jobs finish (fan-out): not a failure; BullMQ runs it again after.
    if (err instanceof WaitingChildrenError) throw err;
    const durationMs = performance.now() - running.startedAt;
    const c = classifyError(err);
    const handBack = opts.shutdown.aborted && c.code === 'interrupted' && token;
    const status = handBack ? 'interrupted' : c.kind === 'permanent' || finalAttempt ? 'failed' : 'retrying';
    ctx.log[status === 'failed' ? 'error' : 'warn']({ code: c.code, kind: c.kind, err }, `job ${status}`);
    metrics.failures.inc({ type, reason: c.code });
    event.status = status;
    event.at = Date.now();
    event.durationMs = durationMs;
    event.errorCode = c.code;
    event.errorMessage = c.message;
    await deps.audit
      .record(event)
      .catch((auditErr: unknown) => ctx.log.error({ err: auditErr }, 'could not write the audit row'));
    if (handBack) {
      // Back to the wait list at once, without using up an attempt; another worker resumes it.
      await job.moveToWait(token);
      throw new WaitingError();
    }
    if (status === 'failed') {
      metrics.jobDuration.observe({ type, outcome: 'failed' }, durationMs / 1000);
    }
    const reason = `[${c.code}] ${c.message}`;
    throw c.kind === 'permanent' ? new UnrecoverableError(reason) : new Error(reason);
  } finally {
    opts.inFlight.finish(running);
  }
}

/**
 * A job still running after a second gets an 'active' audit event, so operators see long jobs in
 * flight; short jobs skip it, their final event says it all.
 */
export function longRunningAudit(deps: FleetDeps): (event: AuditEvent) => void {
  return (event) =>
    void deps.audit
      .record({ ...event, status: 'active', at: Date.now() })
      .catch((err: unknown) =>
        deps.log.warn({ err, queue: event.queue, jobId: event.jobId }, 'audit write failed'),
      );
}
