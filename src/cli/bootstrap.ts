/** Starts a process: environment, logger, config module, connections, control schema. */
import { pino } from 'pino';
import { createClient, type FleetClient } from '../client/client.ts';
import { loadConfig } from '../config/define.ts';
import { loadEnv } from '../config/env.ts';
import { createLogger } from '../logger.ts';
import { closeDeps, createDeps, type FleetDeps } from '../runtime/deps.ts';

export async function bootstrap(options: { logToStderr?: boolean } = {}): Promise<FleetDeps> {
  const env = loadEnv();
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

/** Runs `fn` with fresh deps and always closes them: for one-shot commands. */
export async function withDeps<T>(fn: (deps: FleetDeps) => Promise<T>): Promise<T> {
  const deps = await bootstrap({ logToStderr: true });
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
