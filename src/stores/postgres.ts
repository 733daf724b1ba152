/**
 * PostgreSQL access. One pool per distinct server URL (not per tenant: a thousand tenants on one
 * server share its pool), and tenant-scoped borrowing that pins `search_path` to the tenant's schema.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Logger } from '../logger.ts';
import { redactUrl } from '../logger.ts';
import { quoteIdent } from './identifiers.ts';

export class PostgresPools {
  readonly #pools = new Map<string, pg.Pool>();
  readonly #log: Logger;
  readonly #max: number;

  constructor(log: Logger, max = 10) {
    this.#log = log;
    this.#max = max;
  }

  pool(url: string): pg.Pool {
    let pool = this.#pools.get(url);
    if (!pool) {
      pool = new pg.Pool({
        connectionString: url,
        max: this.#max,
        idleTimeoutMillis: 30_000,
        connectionTimeoutMillis: 10_000,
      });
      // An idle client's connection dropping (server restart) must not crash the process; the pool
      // discards it and the next borrow reconnects.
      pool.on('error', (err) =>
        this.#log.warn({ err, server: redactUrl(url) }, 'idle PostgreSQL client failed'),
      );
      this.#pools.set(url, pool);
    }
    return pool;
  }

  async closeAll(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((p) => p.end()));
  }
}

/** Borrow a client, run `fn`, always release it; a client that failed mid-use is destroyed, not reused. */
export async function withPoolClient<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  // A borrowed client whose server goes away between queries emits 'error'; unheard, that would
  // crash the process. Remember it instead: the next query fails, and release destroys the client.
  const onError = (err: Error) => (broken ??= err);
  client.on('error', onError);
  try {
    return await fn(client);
  } catch (err) {
    broken ??= err instanceof Error ? err : new Error(String(err));
    throw err;
  } finally {
    client.off('error', onError);
    client.release(broken);
  }
}

export async function inTransaction<T>(client: pg.PoolClient, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * COPYs ready-made COPY text (see copy-text.ts) into `target` (already quoted), as one chunk:
 * pg-copy-streams sends each chunk as its own message, two socket writes apiece. Resolves to the
 * number of rows PostgreSQL copied.
 */
export async function copyInto(
  client: pg.PoolClient,
  target: string,
  columns: readonly string[],
  text: Buffer,
): Promise<number> {
  const cols = columns.map(quoteIdent).join(', ');
  const copy = client.query(copyFrom(`COPY ${target} (${cols}) FROM STDIN`));
  await pipeline(Readable.from([text]), copy);
  return copy.rowCount;
}

/** A handler's view of its tenant's PostgreSQL: its schema only. */
export interface TenantPostgres {
  readonly schema: string;
  /** `users` -> `"t_acme"."users"` */
  table(name: string): string;
  withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  withTransaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
}

export function tenantPostgres(pool: pg.Pool, schema: string): TenantPostgres {
  const quotedSchema = quoteIdent(schema);
  const withClient = <T>(fn: (client: pg.PoolClient) => Promise<T>) =>
    withPoolClient(pool, async (client) => {
      await client.query(`SET search_path TO ${quotedSchema}`);
      try {
        return await fn(client);
      } finally {
        await client.query('RESET search_path').catch(() => undefined);
      }
    });
  return {
    schema,
    table: (name) => `${quotedSchema}.${quoteIdent(name)}`,
    withClient,
    withTransaction: (fn) => withClient((client) => inTransaction(client, () => fn(client))),
  };
}
