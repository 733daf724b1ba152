/**
 * Run-scoped checkpoints in Redis. A retried or taken-over attempt reads the last one and resumes
 * there. Handlers whose writes can be made atomic with their checkpoint (COPY into PostgreSQL) keep a
 * transactional one in the tenant store instead; see workers/load-fixtures.
 */
import type { Redis } from 'ioredis';
import type { JobPolicy } from '../../queues/contract.ts';
import { isLegacyRunId } from '../jobs/envelope.ts';

export interface Checkpoint {
  get<T>(): Promise<T | undefined>;
  set(value: unknown): Promise<void>;
  /**
   * The run's last checkpoint, kept only as long as its job can be delivered again (while BullMQ
   * retains the completed job), so that a redelivery returns without redoing the work.
   */
  finish(value: unknown): Promise<void>;
}

/**
 * Keyed by the run, never by the BullMQ job id (which repeats). Jobs queued before run ids existed
 * keep the key their checkpoints were written under then.
 */
export function checkpointKey(prefix: string, queue: string, jobId: string, runId: string): string {
  return isLegacyRunId(runId) ? `${prefix}:${queue}:${jobId}:checkpoint` : `${prefix}:dbfleet:run:${runId}`;
}

/**
 * Added to the retention a checkpoint is kept for: BullMQ removes finished jobs past their age only
 * when another job of the queue finishes, so in a quiet queue a job can outlive its retention.
 */
export const CHECKPOINT_MARGIN_SECONDS = 7 * 24 * 3600;

/** How long a run's checkpoint outlives its last write: finished, and not yet finished. */
export function checkpointLifetime(policy: Pick<JobPolicy, 'keepCompleted' | 'keepFailed'>): {
  finished: number;
  unfinished: number;
} {
  return {
    finished: policy.keepCompleted.ageSeconds + CHECKPOINT_MARGIN_SECONDS,
    unfinished: policy.keepFailed.ageSeconds + CHECKPOINT_MARGIN_SECONDS,
  };
}

export function redisCheckpoint(
  redis: Redis,
  key: string,
  policy: Pick<JobPolicy, 'keepCompleted' | 'keepFailed'>,
): Checkpoint {
  // An unfinished run can be retried for as long as its failed job is kept.
  const lifetime = checkpointLifetime(policy);
  const write = (value: unknown, ttlSeconds: number) =>
    redis.set(key, JSON.stringify(value), 'EX', ttlSeconds).then(() => undefined);
  return {
    async get<T>() {
      const raw = await redis.get(key);
      return raw === null ? undefined : (JSON.parse(raw) as T);
    },
    set: (value) => write(value, lifetime.unfinished),
    finish: (value) => write(value, lifetime.finished),
  };
}
