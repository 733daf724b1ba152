/**
 * A short lease in Redis: one process at a time reconciles the schedules. Taken with SET NX PX and
 * a random token; renewed and released only by the holder of that token (compare-and-expire,
 * compare-and-delete in one script each), so a process whose lease lapsed while it stalled cannot
 * release or extend the next holder's. A killed holder's lease lapses by itself.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';

const RENEW = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`;
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export class RedisLease {
  readonly token = randomUUID();
  readonly #redis: Redis;
  readonly #key: string;
  readonly #ttlMs: number;
  #renewedAt = 0;

  constructor(redis: Redis, key: string, ttlMs: number) {
    this.#redis = redis;
    this.#key = key;
    this.#ttlMs = ttlMs;
  }

  async tryAcquire(): Promise<boolean> {
    const taken = (await this.#redis.set(this.#key, this.token, 'PX', this.#ttlMs, 'NX')) === 'OK';
    if (taken) this.#renewedAt = performance.now();
    return taken;
  }

  /** Extends the lease when a third of it has gone; false when it is no longer ours. */
  async renewIfDue(): Promise<boolean> {
    if (performance.now() - this.#renewedAt < this.#ttlMs / 3) return true;
    const renewed = (await this.#redis.eval(RENEW, 1, this.#key, this.token, this.#ttlMs)) === 1;
    if (renewed) this.#renewedAt = performance.now();
    return renewed;
  }

  async release(): Promise<void> {
    await this.#redis.eval(RELEASE, 1, this.#key, this.token);
  }

  /** Milliseconds until whoever holds the lease loses it; 0 when nobody holds it. */
  async remainingMs(): Promise<number> {
    return Math.max(0, await this.#redis.pttl(this.#key));
  }
}
