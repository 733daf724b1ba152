/**
 * Audit events in the outbox's earlier line format. Until control migration 4 (2026-11-22) workers
 * wrote each event's times as ISO text and a finished_at column, in stream entries whose field is
 * 'e'. During a rolling upgrade, workers of both versions append to the same stream, so the drainer
 * converts those lines rather than stopping at them: they go through a temporary table into
 * dbfleet.job_event_log, in stream order. Only an upgrade produces them, so this path is not tuned.
 */
import type pg from 'pg';
import { copyInto } from '../stores/postgres.ts';

/** The stream field holding version-3 lines (current entries use EVENT_FIELD). */
export const LEGACY_EVENT_FIELD = 'e';

const V3_COLUMNS = [
  'prefix',
  'queue',
  'job_id',
  'tenant',
  'requested_by',
  'payload_digest',
  'status',
  'attempt',
  'enqueued_at',
  'started_at',
  'finished_at',
  'duration_ms',
  'result_summary',
  'error_code',
  'error_message',
  'recorded_at',
] as const;

const ms = (column: string) => `(extract(epoch FROM ${column}) * 1000)::bigint`;

/**
 * Copies version-3 lines into dbfleet.job_event_log, inside the caller's transaction. Resolves to the
 * number of rows PostgreSQL read from `text`.
 */
export async function copyLegacyEvents(client: pg.PoolClient, text: Buffer): Promise<number> {
  await client.query(`CREATE TEMP TABLE IF NOT EXISTS _dbfleet_v3_events (
      n bigserial, prefix text, queue text, job_id text, tenant text, requested_by text,
      payload_digest text, status text, attempt integer, enqueued_at timestamptz, started_at timestamptz,
      finished_at timestamptz, duration_ms integer, result_summary text, error_code text,
      error_message text, recorded_at timestamptz) ON COMMIT DELETE ROWS`);
  const rows = await copyInto(client, '_dbfleet_v3_events', V3_COLUMNS, text);
  await client.query(`
    INSERT INTO dbfleet.job_event_log (prefix, queue, job_id, tenant, requested_by, payload_digest, status,
                                       attempt, enqueued_ms, started_ms, duration_ms, result_summary,
                                       error_code, error_message, recorded_ms)
    SELECT prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempt, ${ms('enqueued_at')},
           ${ms('started_at')}, duration_ms, result_summary, error_code, error_message, ${ms('recorded_at')}
    FROM _dbfleet_v3_events ORDER BY n;
    TRUNCATE _dbfleet_v3_events`);
  return rows;
}
