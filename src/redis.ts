import type { Redis } from 'ioredis';
import type { RedisOptions } from 'bullmq';
import type { Logger } from './logger.ts';

/**
 * Options for a new connection to the same server as `redis`. Given options rather than an instance,
 * BullMQ owns the connection it makes and closes it with its queue-events or worker object.
 */
export function sameServer(redis: Redis): RedisOptions {
  const { host, port, db, username, password, tls } = redis.options;
  return { host, port, db, username, password, tls, maxRetriesPerRequest: null };
}

/**
 * Deletes every key under `<prefix>:` (a finished test's or benchmark's queues and audit outbox), in
 * batches, without blocking Redis the way KEYS or one huge DEL would.
 */
export async function deleteKeysUnder(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${globEscape(prefix)}:*`, 'COUNT', 1000);
    if (keys.length > 0) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/** The text matched literally by a Redis MATCH pattern. */
function globEscape(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * Warns when Redis would lose the fleet's state: it holds the queues, checkpoints and undrained audit
 * events, so it must persist (append-only file) and never evict keys. Managed services that refuse
 * CONFIG are taken on trust.
 */
export async function warnIfNotDurable(redis: Redis, log: Logger): Promise<void> {
  const setting = async (name: string) => ((await redis.config('GET', name).catch(() => [])) as string[])[1];
  const [appendonly, policy] = await Promise.all([setting('appendonly'), setting('maxmemory-policy')]);
  if (appendonly === 'no')
    log.warn('Redis runs without its append-only file: a restart loses queued jobs (set appendonly yes)');
  if (policy !== undefined && policy !== 'noeviction')
    log.warn({ policy }, 'Redis may evict keys (maxmemory-policy): set it to noeviction');
}
