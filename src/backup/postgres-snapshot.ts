/**
 * One consistent view of a tenant's tables for a whole backup, read over several connections: the
 * first opens a REPEATABLE READ, READ ONLY transaction and exports its snapshot; each other joins it
 * with SET TRANSACTION SNAPSHOT, so tables read in parallel are read as of the same instant. The
 * position (the WAL LSN at the start) goes into the manifest.
 */
import type pg from 'pg';

export interface SharedSnapshot {
  /** The exported snapshot's id: valid while the leader's transaction is open. */
  id: string;
  /** Where the data stood (pg_current_wal_lsn at the start), for the manifest. */
  lsn: string;
  /** Opens a transaction on `client` in the same snapshot. */
  join(client: pg.PoolClient): Promise<void>;
  /** Ends the leader's transaction (joined ones are each client's to end). */
  release(): Promise<void>;
}

const BEGIN = 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY';

/** Starts the backup's snapshot on `leader`, which holds it open until release(). */
export async function exportSnapshot(leader: pg.PoolClient): Promise<SharedSnapshot> {
  await leader.query(BEGIN);
  try {
    const { rows } = await leader.query<{ id: string; lsn: string }>(
      'SELECT pg_export_snapshot() AS id, pg_current_wal_lsn()::text AS lsn',
    );
    const { id, lsn } = rows[0]!;
    return {
      id,
      lsn,
      async join(client) {
        await client.query(BEGIN);
        await client.query(`SET TRANSACTION SNAPSHOT ${leader.escapeLiteral(id)}`);
      },
      async release() {
        await leader.query('COMMIT');
      },
    };
  } catch (err) {
    await leader.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
