/**
 * Loads batches into a tenant table with COPY. Each batch commits together with its checkpoint row
 * (in the tenant's schema, same transaction), so a crash anywhere leaves either both or neither: a
 * retried job resumes at the exact record, with no duplicates and no gaps. Rows PostgreSQL refuses
 * (a date out of range, a duplicate key...) are rejected one by one inside the batch's transaction,
 * with savepoints, and the batch's other rows commit (see writeRows).
 */
import type pg from 'pg';
import { PermanentError } from '../../src/errors.ts';
import { copyInto, type TenantPostgres } from '../../src/stores/postgres.ts';
import { quoteIdent } from '../../src/stores/identifiers.ts';
import { CopyTextBuffer, type CopyBatch } from '../../src/stores/copy-text.ts';
import { copyContext, refusalReason, rowRefusal, type PgError } from './pg-refusal.ts';
import { lastByKey, withRefused, type Progress, type Rejection, type Row, type Sink } from './sink.ts';

const CHECKPOINTS = '_dbfleet_load_checkpoints';
/** upsert's temporary table, one per batch (dropped at commit). */
const BATCH_TABLE = '_dbfleet_batch';
/** Marks, inside a batch's transaction, the rows applied so far; a refused row rolls back to it. */
const SAVEPOINT = 'dbfleet_rows';

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
  /** Identifies this load across attempts: the run id. */
  loadKey: string;
  /**
   * How long checkpoints of other loads are kept once untouched: a finished one while its completed
   * job may still be delivered again, an unfinished one while its failed job may still be retried.
   */
  keepSeconds: { finished: number; unfinished: number };
}

export function postgresSink(o: PostgresSinkOptions): Sink {
  const target = o.pg.table(o.table);
  const checkpoints = o.pg.table(CHECKPOINTS);
  const cols = o.columns.map(quoteIdent).join(', ');

  /** The checkpoint upsert as one simple statement, so that it can travel with the COMMIT. */
  const checkpointSql = (p: Progress) =>
    `INSERT INTO ${checkpoints} (load_key, progress, updated_at)
     VALUES (${o.client.escapeLiteral(o.loadKey)}, ${o.client.escapeLiteral(JSON.stringify(p))}::jsonb, now())
     ON CONFLICT (load_key) DO UPDATE SET progress = EXCLUDED.progress, updated_at = now()`;

  /** upsert: the batch goes into a temporary table, and from there into the target. */
  const fromBatchTable = (key: readonly string[]) => {
    const updates = o.columns
      .filter((c) => !key.includes(c))
      .map((c) => `${quoteIdent(c)} = EXCLUDED.${quoteIdent(c)}`);
    return `INSERT INTO ${target} (${cols}) SELECT ${cols} FROM ${BATCH_TABLE}
      ON CONFLICT (${key.map(quoteIdent).join(', ')}) DO ${updates.length ? `UPDATE SET ${updates.join(', ')}` : 'NOTHING'}`;
  };
  const upsertSql = o.mode === 'upsert' ? fromBatchTable(o.key!) : undefined;

  // insert and replace encode each row as it arrives; upsert keeps rows to drop repeated keys.
  const text = new CopyTextBuffer();
  let rows: Row[] = [];
  let count = 0;
  /** Rows of this batch PostgreSQL could not store (see CopyTextBuffer.appendRow). */
  let refused: Rejection[] = [];
  /** Appends the row's line, or notes why PostgreSQL could not store it; true when appended. */
  const encode = (buffer: CopyTextBuffer, row: Row, refusals: Rejection[]) => {
    const reason = buffer.appendRow(row.value, o.columns, row.line);
    if (reason) refusals.push({ line: row.line, reason });
    return !reason;
  };

  /**
   * Writes the batch's rows inside the open transaction, whose savepoint marks the state before
   * them. All at once first (one COPY: the fast path). When PostgreSQL refuses a row (see
   * rowRefusal), the refused rows are found by bisection: a range that fails is rolled back to the
   * savepoint and split, a range that succeeds stays applied (ranges go in order, so of two rows with
   * one key the first lands), and a single row that fails is rejected. Any other error is thrown.
   */
  async function writeRows(batch: CopyBatch, refusals: Rejection[]): Promise<void> {
    const client = o.client;
    const copied = upsertSql ? BATCH_TABLE : o.table;
    /** Rows went in since the savepoint was set: move it past them before the next attempt. */
    let moved = false;

    /** Applies rows [from, to) of the batch; returns the refusal when PostgreSQL refused one of them. */
    const attempt = async (from: number, to: number): Promise<PgError | undefined> => {
      if (moved) {
        // upsert: the temporary table held the rows that went in; it starts empty for the next ones.
        await client.query(
          `${upsertSql ? `TRUNCATE ${BATCH_TABLE}; ` : ''}RELEASE SAVEPOINT ${SAVEPOINT}; SAVEPOINT ${SAVEPOINT}`,
        );
        moved = false;
      }
      try {
        await copyInto(client, upsertSql ? BATCH_TABLE : target, o.columns, batch.slice(from, to));
        if (upsertSql) await client.query(upsertSql);
        moved = true;
        return undefined;
      } catch (err) {
        const refusal = rowRefusal(err, o.columns);
        if (!refusal) throw err;
        await client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}`);
        return refusal;
      }
    };
    const refuse = (row: number, err: PgError) =>
      refusals.push({
        line: batch.line(row),
        reason: refusalReason(err, { relation: copied, columns: o.columns }),
      });

    /**
     * [from, to) failed as a whole with `err`. Settles its first rows (each applied or refused) and
     * returns the first row left to apply.
     */
    const narrow = async (from: number, to: number, err: PgError): Promise<number> => {
      if (to - from === 1) {
        refuse(from, err);
        return to;
      }
      // A COPY's error names the line it stopped at. The rows before it passed: they go in again,
      // and when they all do, the table is as it was when that row failed, so it is rejected
      // without another try. (A check made after the last row, a foreign key's, names no line.)
      const line = copyContext(err, copied, o.columns).line;
      const named = line && line <= to - from ? from + line - 1 : undefined;
      if (named === undefined) {
        const half = from + Math.floor((to - from) / 2);
        await apply(from, half);
        return half;
      }
      if (named > from) {
        const before = await attempt(from, named);
        if (before) return narrow(from, named, before);
      }
      refuse(named, err);
      return named + 1;
    };

    /**
     * Applies [from, to), rejecting the rows PostgreSQL refuses. After a refusal the next try covers
     * one row, then twice as many after each success: refusals that come in runs (a file loaded
     * twice) cost a row's COPY each, not a resend of the whole rest per row, and a lone refusal
     * costs a few small COPYs before full ranges again.
     */
    const apply = async (from: number, to: number): Promise<void> => {
      let span = to - from;
      while (from < to) {
        const end = Math.min(to, from + span);
        const err = await attempt(from, end);
        if (!err) {
          from = end;
          span *= 2;
          continue;
        }
        from = await narrow(from, end, err);
        span = 1;
      }
    };

    await apply(0, batch.rows);
  }

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
      // Checkpoints outlive their loads only while a delivery or retry may still need them.
      await client.query(
        `DELETE FROM ${checkpoints} WHERE load_key <> $1 AND updated_at < now() - make_interval(secs =>
           CASE WHEN (progress->>'done')::boolean THEN $2::int ELSE $3::int END)`,
        [o.loadKey, o.keepSeconds.finished, o.keepSeconds.unfinished],
      );
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
      try {
        // One round trip: the transaction; replace's TRUNCATE, before the savepoint so that a
        // refused row never undoes it (the table is emptied in the first batch's transaction, so it
        // is never seen empty); upsert's temporary table; the savepoint refused rows roll back to.
        await client.query(
          [
            'BEGIN',
            // Deferred constraints would refuse a row only at COMMIT, past the savepoints that let a
            // refused row be rejected alone: checked at each statement instead.
            'SET CONSTRAINTS ALL IMMEDIATE',
            ...(o.mode === 'replace' && next.batches === 1 ? [`TRUNCATE ${target}`] : []),
            ...(upsertSql && batch.count > 0
              ? [`CREATE TEMP TABLE ${BATCH_TABLE} (LIKE ${target} INCLUDING DEFAULTS) ON COMMIT DROP`]
              : []),
            `SAVEPOINT ${SAVEPOINT}`,
          ].join('; '),
        );
        if (upsertSql && batch.count > 0) {
          const unique = new CopyTextBuffer();
          // ON CONFLICT cannot update the same row twice in one statement.
          for (const row of lastByKey(batch.rows, o.key!, JSON.stringify)) encode(unique, row, batch.refused);
          await writeRows(unique.take(), batch.refused);
        } else if (batch.count > 0) {
          await writeRows(batch.text, batch.refused);
        }
        await client.query(`${checkpointSql(withRefused(next, batch.refused))}; COMMIT`);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
      // Encoding refusals come first in the batch's list and PostgreSQL's after: in line order.
      return batch.refused.sort((a, b) => a.line - b.line);
    },

    async finish(progress) {
      await o.client.query(checkpointSql({ ...progress, done: true }));
    },
  };
}
