/** Starts a process: environment, logger, config module, connections, control schema. */
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { createClient, type FleetClient } from '../client/client.ts';
import { loadConfig } from '../config/define.ts';
import { loadEnv } from '../config/env.ts';
import { createLogger, redactUrl } from '../logger.ts';
import { closeDeps, createDeps, type FleetDeps } from '../runtime/deps.ts';

/** How long a one-shot command waits for Redis to answer before it gives up. */
export const REDIS_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Connects once to Redis, without retrying, and throws a one-line error naming the server (password
 * hidden) and the cause. The fleet's own connection retries forever, as a worker or the board must
 * outlive a Redis restart; a one-shot command on it would hang, its queues printing every failed
 * attempt, when the operator needs to hear at once that Redis is unreachable.
 */
export async function assertRedisReachable(url: string, timeoutMs = REDIS_CONNECT_TIMEOUT_MS): Promise<void> {
  const probe = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  // ioredis rejects connect() with "Connection is closed."; the cause is in the error event.
  let cause: Error | undefined;
  probe.on('error', (err: Error) => (cause = err));
  try {
    await probe.connect();
  } catch (err) {
    const reason = (cause ?? (err as Error)).message;
    throw new Error(redactUrl(`Redis at ${url} is unreachable: ${reason}`), { cause: err });
  } finally {
    probe.disconnect();
  }
}

export async function bootstrap(
  options: { logToStderr?: boolean; oneShot?: boolean } = {},
): Promise<FleetDeps> {
  const env = loadEnv();
  if (options.oneShot) await assertRedisReachable(env.DBFLEET_REDIS_URL);
  const log = createLogger(env.DBFLEET_LOG_LEVEL, options.logToStderr ? pino.destination(2) : undefined);
  const config = await loadConfig(env.DBFLEET_CONFIG);
  const deps = createDeps(env, config, log);
  try {
    await deps.control.migrate();
  } catch (err) {
    await closeDeps(deps);
    throw err;
  }
  return deps;
}

/**
 * Runs `fn` with fresh deps and always closes them: for one-shot commands, which fail within
 * REDIS_CONNECT_TIMEOUT_MS when Redis does not answer.
 */
export async function withDeps<T>(fn: (deps: FleetDeps) => Promise<T>): Promise<T> {
  const deps = await bootstrap({ logToStderr: true, oneShot: true });
  try {
    return await fn(deps);
  } finally {
    await closeDeps(deps);
  }
}

/** Runs `fn` with a producer client on fresh deps, closing both whatever happens. */
export async function withClient<T>(fn: (client: FleetClient, deps: FleetDeps) => Promise<T>): Promise<T> {
  return withDeps(async (deps) => {
    const client = createClient({ redis: deps.redis, prefix: deps.prefix });
    try {
      return await fn(client, deps);
    } finally {
      await client.close();
    }
  });
}

/** On SIGTERM or SIGINT, runs `stop` once; a second signal exits at once. */
export function onShutdownSignal(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    process.stderr.write(`received ${signal}, shutting down\n`);
    stop().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
