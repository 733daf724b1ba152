/**
 * The producer client: the package's public API for app backends.
 *
 *   const fleet = createClient({ redisUrl: process.env.DBFLEET_REDIS_URL });
 *   const job = await fleet.enqueue('backup', { tenant: 'acme' }, { idempotencyKey: 'nightly-2026-11-21' });
 *   const result = await job.waitForResult({ timeoutMs: 60_000 });
 *
 * Payloads are validated before anything touches Redis; an invalid one throws a ValidationError that
 * names the field.
 */
import { Queue, QueueEvents, type Job, type JobsOptions } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { ValidationError, zodIssues } from '../errors.ts';
import { catalog, type JobName, type PayloadInput, type Result } from '../../queues/index.ts';
import { sameServer } from '../redis.ts';
import { buildJob, jobIdForKey, runIdOf, type JobEnvelope } from '../jobs/envelope.ts';

export interface EnqueueOptions {
  /** The same key (per job type) gives the same job while that job is retained. */
  idempotencyKey?: string;
  /** 1 (highest) to 2,097,152; jobs without a priority run before prioritised ones, as in BullMQ. */
  priority?: number;
  delayMs?: number;
  requestedBy?: string;
}

export interface ClientOptions {
  /** A Redis URL, or an existing ioredis connection (not closed by the client). */
  redis: string | Redis;
  /** Redis key prefix shared by producers and workers; `dbfleet` by default. */
  prefix?: string;
}

export interface EnqueuedJob<N extends JobName> {
  /** BullMQ's job id: what the board, the CLI and the audit log show. */
  readonly id: string;
  /**
   * The run's identity, unique for all time (the job id repeats): what checkpoints and records such
   * as `dbfleet.load_rejections` are keyed by. For an idempotency key that found its job already
   * queued, that job's run.
   */
  readonly runId: string;
  readonly type: N;
  /** Resolves with the handler's result; rejects with the failure reason once retries are exhausted. */
  waitForResult(options?: { timeoutMs?: number }): Promise<Result<N>>;
  /** Calls back with each progress report; returns an unsubscribe function. */
  onProgress(listener: (progress: unknown) => void): Promise<() => void>;
}

export interface FleetClient {
  enqueue<N extends JobName>(
    type: N,
    payload: PayloadInput<N>,
    options?: EnqueueOptions,
  ): Promise<EnqueuedJob<N>>;
  enqueueBulk<N extends JobName>(
    type: N,
    jobs: { payload: PayloadInput<N>; options?: EnqueueOptions }[],
  ): Promise<EnqueuedJob<N>[]>;
  queue(type: JobName): Queue;
  close(): Promise<void>;
}

/** BullMQ's own bound on priorities. */
const MAX_PRIORITY = 2_097_152;
const YEAR_MS = 365 * 24 * 3600_000;

/** Enqueue options are input too: an unknown or out-of-range option is refused, not ignored. */
const enqueueOptions = z.strictObject({
  idempotencyKey: z.string().min(1).max(512).optional(),
  priority: z.number().int().min(1).max(MAX_PRIORITY).optional(),
  delayMs: z.number().int().min(0).max(YEAR_MS).optional(),
  requestedBy: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[^\p{Cc}]*$/u, 'must not contain control characters')
    .optional(),
});

/** Validates enqueue options; throws a ValidationError naming each bad or unknown option. */
export function checkEnqueueOptions(options: unknown): EnqueueOptions {
  // Absent values (`--priority` not given on the CLI) are the same as absent options.
  const present =
    options && typeof options === 'object'
      ? Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined))
      : options;
  const parsed = enqueueOptions.safeParse(present ?? {});
  if (!parsed.success) throw new ValidationError('enqueue options', zodIssues(parsed.error));
  return parsed.data;
}

export function jobOptions(type: JobName, options: EnqueueOptions = {}): JobsOptions {
  const { policy } = catalog[type];
  return {
    ...(options.idempotencyKey ? { jobId: jobIdForKey(options.idempotencyKey) } : {}),
    ...(options.priority ? { priority: options.priority } : {}),
    ...(options.delayMs ? { delay: options.delayMs } : {}),
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoff.delayMs, jitter: policy.backoff.jitter },
    removeOnComplete: { age: policy.keepCompleted.ageSeconds, count: policy.keepCompleted.count },
    removeOnFail: { age: policy.keepFailed.ageSeconds },
  };
}

export function createClient(options: ClientOptions): FleetClient {
  const prefix = options.prefix ?? 'dbfleet';
  const ownsConnection = typeof options.redis === 'string';
  // BullMQ needs maxRetriesPerRequest: null so that blocking calls survive reconnects.
  const connection =
    typeof options.redis === 'string'
      ? new Redis(options.redis, { maxRetriesPerRequest: null })
      : options.redis;
  const queues = new Map<JobName, Queue>();
  const events = new Map<JobName, Promise<QueueEvents>>();

  const queue = (type: JobName) => {
    let q = queues.get(type);
    if (!q) {
      q = new Queue(type, { connection, prefix });
      queues.set(type, q);
    }
    return q;
  };

  const queueEvents = (type: JobName) => {
    let e = events.get(type);
    if (!e) {
      // QueueEvents blocks on a connection of its own; given options (not an instance), BullMQ owns
      // that connection and closes it with the QueueEvents. It reads from the events stream's last
      // entry as of now, not from '$' at its first read: a job finishing between "ready" and that
      // first read was otherwise missed, and its waitForResult hung until its timeout.
      e = (async () => {
        const [last] = await connection.xrevrange(queue(type).keys.events!, '+', '-', 'COUNT', 1);
        const qe = new QueueEvents(type, {
          connection: sameServer(connection),
          prefix,
          lastEventId: last?.[0] ?? '0-0',
        });
        await qe.waitUntilReady();
        return qe;
      })();
      events.set(type, e);
    }
    return e;
  };

  /**
   * The job as Redis holds it. An idempotency key that found its job already there gets BullMQ's
   * handle built from the data just sent, not the stored job's (whose run it is).
   */
  const stored = async (type: JobName, job: Job<JobEnvelope>): Promise<Job<JobEnvelope>> =>
    ((await queue(type).getJob(job.id!)) as Job<JobEnvelope> | undefined) ?? job;

  const wrap = <N extends JobName>(type: N, job: Job<JobEnvelope>): EnqueuedJob<N> => ({
    id: job.id!,
    runId: runIdOf(job.data, prefix, job.id!),
    type,
    async waitForResult({ timeoutMs } = {}) {
      return (await job.waitUntilFinished(await queueEvents(type), timeoutMs)) as Result<N>;
    },
    async onProgress(listener) {
      const qe = await queueEvents(type);
      const handler = ({ jobId, data }: { jobId: string; data: unknown }) => {
        if (jobId === job.id) listener(data);
      };
      qe.on('progress', handler);
      return () => void qe.off('progress', handler);
    },
  });

  return {
    async enqueue(type, payload, opts) {
      // Both throw before anything touches Redis.
      const options = checkEnqueueOptions(opts);
      const { name, data } = buildJob(type, payload, options.requestedBy);
      const job = await queue(type).add(name, data, jobOptions(type, options));
      return wrap(type, options.idempotencyKey ? await stored(type, job) : job);
    },
    async enqueueBulk(type, items) {
      const prepared = items.map((i) => {
        const options = checkEnqueueOptions(i.options);
        return { ...buildJob(type, i.payload, options.requestedBy), opts: jobOptions(type, options) };
      });
      const jobs = await queue(type).addBulk(prepared);
      return Promise.all(
        jobs.map(async (j, i) => wrap(type, items[i]!.options?.idempotencyKey ? await stored(type, j) : j)),
      );
    },
    queue,
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
      await Promise.all([...events.values()].map(async (e) => (await e).close()));
      queues.clear();
      events.clear();
      if (ownsConnection) await connection.quit();
    },
  };
}
