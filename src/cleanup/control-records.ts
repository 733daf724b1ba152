/**
 * Retention on the fleet's own records about one tenant in the control database: job audit events and
 * load rejections older than N days, of this deployment (prefix) and this tenant only. Both tables
 * are appended in time order, so each batch takes the oldest matching rows it finds (the audit log's
 * time index is a BRIN range) and commits with its progress row (dbfleet.cleanup_progress): a crashed
 * run resumes with exact counts.
 */
import type pg from 'pg';
import { inTransaction, withPoolClient } from '../stores/postgres.ts';
import { emptyOutcome, type PolicyOutcome, type RunScope } from './outcome.ts';
import { pace, rest } from './pace.ts';
import type { RetentionPolicy } from './policies.ts';

type ControlPolicy = Extract<RetentionPolicy, { store: 'control' }>;

const TABLES: Record<ControlPolicy['records'], { table: string; match: string; time: string }> = {
  // The expression the BRIN index of migration 3 is on, so that the scan reads only old blocks.
  audit_events: {
    table: 'dbfleet.job_event_log',
    match: 'prefix = $1 AND tenant = $2 AND to_timestamp(recorded_ms / 1000.0::float8) < $3::timestamptz',
    time: 'to_timestamp(recorded_ms / 1000.0::float8)',
  },
  load_rejections: {
    table: 'dbfleet.load_rejections',
    match: 'prefix = $1 AND tenant = $2 AND created_at < $3::timestamptz',
    time: 'created_at',
  },
};

export async function surveyRecords(
  pool: pg.Pool,
  prefix: string,
  policy: ControlPolicy,
  s: RunScope,
): Promise<PolicyOutcome> {
  const t = TABLES[policy.records];
  const { rows } = await pool.query<{ n: string; oldest: string | null; newest: string | null }>(
    `SELECT count(*) AS n, to_json(min(${t.time}))#>>'{}' AS oldest, to_json(max(${t.time}))#>>'{}' AS newest
       FROM ${t.table} WHERE ${t.match}`,
    [prefix, s.tenant, s.cutoff.toISOString()],
  );
  return {
    ...emptyOutcome(policy.name, 'control', true),
    matched: Number(rows[0]!.n),
    oldest: rows[0]!.oldest,
    newest: rows[0]!.newest,
  };
}

export async function cleanRecords(
  pool: pg.Pool,
  prefix: string,
  policy: ControlPolicy,
  s: RunScope,
): Promise<PolicyOutcome> {
  const t = TABLES[policy.records];
  const batchPace = pace();
  return withPoolClient(pool, async (client) => {
    const { rows } = await client.query<{
      matched: string;
      deleted: string;
      batches: number;
      longest_ms: number;
      done: boolean;
    }>(
      `SELECT matched, deleted, batches, longest_ms, done FROM dbfleet.cleanup_progress
        WHERE prefix = $1 AND run_id = $2 AND policy = $3`,
      [prefix, s.runId, policy.name],
    );
    const saved = rows[0];
    const outcome: PolicyOutcome = {
      ...emptyOutcome(policy.name, 'control', false),
      matched: Number(saved?.matched ?? 0),
      deleted: Number(saved?.deleted ?? 0),
      batches: saved?.batches ?? 0,
      longestBatchMs: saved?.longest_ms ?? 0,
    };
    if (saved?.done) return outcome;
    for (;;) {
      s.throwIfInterrupted();
      const size = batchPace.size;
      const started = performance.now();
      const n = await inTransaction(client, async () => {
        const { rowCount } = await client.query(
          `DELETE FROM ${t.table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM ${t.table} WHERE ${t.match} LIMIT $4))`,
          [prefix, s.tenant, s.cutoff.toISOString(), size],
        );
        const deleted = rowCount ?? 0;
        const ms = Math.round(performance.now() - started);
        Object.assign(outcome, {
          matched: outcome.matched + deleted,
          deleted: outcome.deleted + deleted,
          batches: outcome.batches + 1,
          longestBatchMs: Math.max(outcome.longestBatchMs, ms),
        });
        await client.query(
          `INSERT INTO dbfleet.cleanup_progress (prefix, run_id, policy, matched, deleted, batches, longest_ms, done)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (prefix, run_id, policy) DO UPDATE SET matched = $4, deleted = $5, batches = $6,
             longest_ms = $7, done = $8, updated_at = now()`,
          [
            prefix,
            s.runId,
            policy.name,
            outcome.matched,
            outcome.deleted,
            outcome.batches,
            outcome.longestBatchMs,
            deleted < size,
          ],
        );
        return deleted;
      });
      batchPace.took(performance.now() - started, n);
      await s.progress(outcome);
      if (n < size) return outcome;
      await rest(batchPace.pauseMs, s.signal);
    }
  });
}
