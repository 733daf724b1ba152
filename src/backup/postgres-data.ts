/**
 * A table's rows out of and into PostgreSQL as COPY text: the format pg_dump uses, exact for every
 * type, readable by `psql \copy` without dbfleet. Streamed both ways; never whole in memory.
 */
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { quoteCatalogName, quoteIdent } from '../stores/identifiers.ts';

export interface CopyOut {
  stream: Readable;
  /** The rows copied, once the stream has ended. */
  rows(): number;
}

/** The table's rows, in the snapshot of the caller's transaction. */
export function copyTableOut(client: pg.PoolClient, schema: string, table: string): CopyOut {
  const stream = client.query(copyTo(`COPY ${quoteIdent(schema)}.${quoteCatalogName(table)} TO STDOUT`));
  return { stream, rows: () => stream.rowCount };
}

/** Loads COPY text into the table; resolves to the rows loaded. */
export async function copyTableIn(
  client: pg.PoolClient,
  schema: string,
  table: string,
  source: Readable,
): Promise<number> {
  const sink = client.query(copyFrom(`COPY ${quoteIdent(schema)}.${quoteCatalogName(table)} FROM STDIN`));
  await pipeline(source, sink);
  return sink.rowCount;
}
