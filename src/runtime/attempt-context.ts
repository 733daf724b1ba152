/**
 * The `ctx` a handler gets for one attempt. A class rather than an object literal: its getters live on
 * the prototype, so building one per job costs a few field stores, and everything a short job never
 * touches (logger, stores, checkpoint, fan-out) is built on first use.
 */
import type { Job } from 'bullmq';
import type { JobName } from '../../queues/index.ts';
import { catalog } from '../../queues/index.ts';
import { InterruptedError, PermanentError } from '../errors.ts';
import type { JobEnvelope } from '../jobs/envelope.ts';
import type { Logger } from '../logger.ts';
import { tenantPostgres, type TenantPostgres } from '../stores/postgres.ts';
import type { TenantLocation } from '../tenants.ts';
import { checkpointKey, redisCheckpoint, type Checkpoint } from './checkpoint.ts';
import type { JobContext } from './context.ts';
import type { FleetDeps } from './deps.ts';
import { fanOutFor, type FanOut } from './fan-out.ts';
import type { RunningJob } from './in-flight.ts';
import { scopeFor, type SourceTemplates, type TenantScope } from '../storage/tenant-scope.ts';

export class AttemptContext implements JobContext {
  readonly tenant: string;
  readonly deps: FleetDeps;
  /** The run's identity ('' only for a job whose envelope was refused: its handler never runs). */
  readonly runId: string;
  readonly #type: JobName;
  readonly #bullJob: Job<JobEnvelope>;
  readonly #token: string | undefined;
  readonly #running: RunningJob;
  readonly #sourceTemplates: SourceTemplates;
  #sources: TenantScope | undefined;
  #log: Logger | undefined;
  #location: TenantLocation | undefined;
  #postgres: TenantPostgres | undefined;
  #checkpoint: Checkpoint | undefined;
  #fanOut: FanOut | undefined;
  #job: JobContext['job'] | undefined;

  constructor(
    deps: FleetDeps,
    type: JobName,
    tenant: string,
    bullJob: Job<JobEnvelope>,
    token: string | undefined,
    running: RunningJob,
    sources: SourceTemplates,
    runId: string,
  ) {
    this.runId = runId;
    this.deps = deps;
    this.#type = type;
    this.#bullJob = bullJob;
    this.#token = token;
    this.#running = running;
    this.#sourceTemplates = sources;
    this.tenant = tenant;
  }

  get job(): JobContext['job'] {
    const bullJob = this.#bullJob;
    return (this.#job ??= {
      id: bullJob.id!,
      runId: this.runId,
      queue: this.#type,
      attempt: bullJob.attemptsMade + 1,
      prefix: this.deps.prefix,
      redelivered: (bullJob.attemptsStarted ?? 0) > 1 || bullJob.attemptsMade > 0,
    });
  }

  /** pino child logger tagged with queue, job, tenant and attempt (a child costs more than a no-op job). */
  get log(): Logger {
    return (this.#log ??= this.deps.log.child({
      queue: this.#type,
      jobId: this.job.id,
      tenant: this.tenant,
      attempt: this.job.attempt,
    }));
  }

  get sources(): TenantScope {
    this.#scoped();
    return (this.#sources ??= scopeFor(this.#sourceTemplates, this.tenant));
  }

  get signal(): AbortSignal {
    return this.#running.signal;
  }

  get postgres(): TenantPostgres {
    const at = this.#scoped();
    return (this.#postgres ??= tenantPostgres(this.deps.postgres.pool(at.postgresUrl), at.namespace));
  }

  get mongo() {
    const at = this.#scoped();
    return this.deps.mongo.db(at.mongoUrl, at.namespace);
  }

  get objects() {
    return this.deps.objects;
  }

  get localObjects() {
    return this.deps.localObjects;
  }

  get s3() {
    return this.deps.s3;
  }

  get config() {
    return this.deps.config;
  }

  get control() {
    return this.deps.control;
  }

  get requestedBy(): string | undefined {
    return this.#bullJob.data?.requestedBy;
  }

  progress(value: number | object): Promise<void> {
    return this.#bullJob.updateProgress(value);
  }

  get checkpoint(): Checkpoint {
    return (this.#checkpoint ??= redisCheckpoint(
      this.deps.redis,
      checkpointKey(this.deps.prefix, this.#type, this.job.id, this.runId),
      catalog[this.#type].policy,
    ));
  }

  get fanOut(): FanOut {
    return (this.#fanOut ??= fanOutFor(this.deps, this.#bullJob, this.#token, this.runId));
  }

  throwIfInterrupted(): void {
    if (this.#running.aborted)
      throw new InterruptedError(this.#running.timedOut ? 'timed out' : 'worker shutting down');
  }

  #scoped(): TenantLocation {
    if (this.tenant === 'all')
      throw new PermanentError(
        'no_tenant',
        `a ${this.#type} job for all tenants has no tenant store of its own`,
      );
    return (this.#location ??= this.deps.tenants.locate(this.tenant));
  }
}
