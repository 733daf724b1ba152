/**
 * Loads batches into a tenant table with COPY. Each batch commits together with its checkpoint row
 * (in the tenant's schema, same transaction), so a crash anywhere leaves either both or neither: a
 * retried job resumes at the exact record, with no duplicates and no gaps.
 */
import type pg from 'pg';
import { PermanentError } from '../../src/errors.ts';
import { copyInto, type TenantPostgres } from '../../src/stores/postgres.ts';
import { quoteIdent } from '../../src/stores/identifiers.ts';
import { CopyTextBuffer } from '../../src/stores/copy-text.ts';
import { withRefused, type Progress, type Rejection, type Row, type Sink } from './sink.ts';

const CHECKPOINTS = '_dbfleet_load_checkpoints';

export interface PostgresSinkOptions {
  /** Names the tenant's schema and tables. */
  pg: TenantPostgres;
  /**
   * One connection for the whole load, borrowed by the caller: each batch then costs three round
   * trips (BEGIN, COPY, checkpoint+COMMIT), which matters because each waits for an event-loop turn
   * while the next batch is being parsed.
   */
  client: pg.PoolClient;
  table: string;
  columns: readonly string[];
  mode: 'insert' | 'upsert' | 'replace';
  key?: readonly string[] | undefined;
  /** Identifies this load across attempts: prefix and job id. */
  loadKey: string;
}

/** Last row wins within a batch: ON CONFLICT cannot update the same row twice in one statement. */
function lastByKey(rows: Row[], key: readonly string[]): Row[] {
  const byKey = new Map<string, Row>();
  for (const row of rows) byKey.set(JSON.stringify(key.map((k) => row.value[k])), row);
  return [...byKey.values()];
}

export function postgresSink(o: PostgresSinkOptions): Sink {
  const target = o.pg.table(o.table);
  const checkpoints = o.pg.table(CHECKPOINTS);

  /** The checkpoint upsert as one simple statement, so that it can travel with the COMMIT. */
  const checkpointSql = (p: Progress) =>
    `INSERT INTO ${checkpoints} (load_key, progress, updated_at)
     VALUES (${o.client.escapeLiteral(o.loadKey)}, ${o.client.escapeLiteral(JSON.stringify(p))}::jsonb, now())
     ON CONFLICT (load_key) DO UPDATE SET progress = EXCLUDED.progress, updated_at = now()`;

  // insert and replace encode each row as it arrives; upsert keeps rows to drop repeated keys.
  const text = new CopyTextBuffer();
  let rows: Row[] = [];
  let count = 0;
  /** Rows of this batch PostgreSQL could not store (see CopyTextBuffer.appendRow). */
  let refused: Rejection[] = [];
  /** Appends the row's line, or notes why PostgreSQL could not store it; true when appended. */
  const encode = (buffer: CopyTextBuffer, row: Row, refusals: Rejection[]) => {
    const reason = buffer.appendRow(row.value, o.columns);
    if (reason) refusals.push({ line: row.line, reason });
    return !reason;
  };

  return {
    add(line, value) {
      if (o.mode === 'upsert') {
        rows.push({ line, value });
        count++;
      } else if (encode(text, { line, value }, refused)) count++;
    },

    async prepare() {
      const client = o.client;
      const { rows } = await client.query<{ t: string | null }>('SELECT to_regclass($1) AS t', [target]);
      if (!rows[0]?.t)
        throw new PermanentError('undefined_table', `target table ${o.pg.schema}.${o.table} does not exist`);
      // Two loads may create the table at once; the loser's unique violation is harmless.
      await client
        .query(
          `CREATE TABLE IF NOT EXISTS ${checkpoints} (
             load_key text PRIMARY KEY, progress jsonb NOT NULL, updated_at timestamptz NOT NULL)`,
        )
        .catch((err: { code?: string }) => {
          if (err.code !== '23505' && err.code !== '42P07') throw err;
        });
      const saved = await client.query<{ progress: Progress }>(
        `SELECT progress FROM ${checkpoints} WHERE load_key = $1`,
        [o.loadKey],
      );
      return saved.rows[0]?.progress;
    },

    async write(next) {
      const batch = { rows, text: text.take(), count, refused };
      rows = [];
      count = 0;
      refused = [];
      const client = o.client;
      await client.query('BEGIN');
      try {
        // replace: empty the table in the same transaction as the first batch, so it is never seen empty.
        if (o.mode === 'replace' && next.batches === 1) await client.query(`TRUNCATE ${target}`);
        if (batch.count > 0 && o.mode === 'upsert') {
          const key = o.key!;
          await client.query(
            `CREATE TEMP TABLE _dbfleet_batch (LIKE ${target} INCLUDING DEFAULTS) ON COMMIT DROP`,
          );
          const unique = new CopyTextBuffer();
          for (const row of lastByKey(batch.rows, key)) encode(unique, row, batch.refused);
          await copyInto(client, '_dbfleet_batch', o.columns, unique.take());
          const cols = o.columns.map(quoteIdent).join(', ');
          const updates = o.columns
            .filter((c) => !key.includes(c))
            .map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
          await client.query(
            `INSERT INTO ${target} (${cols}) SELECT ${cols} FROM _dbfleet_batch
             ON CONFLICT (${key.map(quoteIdent).join(', ')}) DO ${updates.length ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}`,
          );
        } else if (batch.count > 0) {
          await copyInto(client, target, o.columns, batch.text);
        }
        await client.query(`${checkpointSql(withRefused(next, batch.refused.length))}; COMMIT`);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      return batch.refused;
    },

    async finish(progress) {
      await o.client.query(checkpointSql({ ...progress, done: true }));
    },
  };
}
