import type { Redis } from 'ioredis';
import type { RedisOptions } from 'bullmq';

/**
 * Options for a new connection to the same server as `redis`. Given options rather than an instance,
 * BullMQ owns the connection it makes and closes it with its queue-events or worker object.
 */
export function sameServer(redis: Redis): RedisOptions {
  const { host, port, db, username, password, tls } = redis.options;
  return { host, port, db, username, password, tls, maxRetriesPerRequest: null };
}
