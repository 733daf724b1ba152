/**
 * Job-scoped checkpoints in Redis, next to the job itself. A retried or taken-over attempt reads the
 * last one and resumes there. Handlers whose writes can be made atomic with their checkpoint (COPY into
 * PostgreSQL) keep a transactional one in the tenant store instead; see workers/load-fixtures.
 */
import type { Redis } from 'ioredis';

export interface Checkpoint {
  get<T>(): Promise<T | undefined>;
  set(value: unknown): Promise<void>;
  clear(): Promise<void>;
}

export function redisCheckpoint(redis: Redis, key: string, ttlSeconds: number): Checkpoint {
  return {
    async get<T>() {
      const raw = await redis.get(key);
      return raw === null ? undefined : (JSON.parse(raw) as T);
    },
    async set(value) {
      await redis.set(key, JSON.stringify(value), 'EX', ttlSeconds);
    },
    async clear() {
      await redis.del(key);
    },
  };
}
