import { describe, expect, test } from 'vitest';
import { AUDIT_COLUMNS, auditLine, isoTime, type AuditEvent } from '../../src/control/audit-outbox.ts';
import { copyLine } from '../../src/stores/copy-text.ts';

/** The generic encoding the hand-written auditLine must match: a row object over AUDIT_COLUMNS. */
function generic(e: AuditEvent): string {
  const time = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms));
  return copyLine(
    {
      prefix: e.prefix,
      queue: e.queue,
      job_id: e.jobId,
      tenant: e.tenant,
      requested_by: e.requestedBy,
      payload_digest: e.payloadDigest,
      status: e.status,
      attempt: e.attempt,
      enqueued_at: time(e.enqueuedAt),
      started_at: time(e.startedAt),
      finished_at: time(e.finishedAt),
      duration_ms: e.durationMs === undefined ? undefined : Math.round(e.durationMs),
      result_summary: e.resultSummary,
      error_code: e.errorCode,
      error_message: e.errorMessage,
      recorded_at: time(e.at),
    },
    AUDIT_COLUMNS,
  );
}

describe('auditLine', () => {
  test('equals copyLine over AUDIT_COLUMNS, for every column filled or empty', () => {
    const full: AuditEvent = {
      prefix: 'dbfleet',
      queue: 'load-fixtures',
      jobId: 'job\t1',
      tenant: 'acme',
      requestedBy: 'ops\\me',
      payloadDigest: 'sha256:ab',
      status: 'failed',
      attempt: 3,
      enqueuedAt: Date.UTC(2026, 10, 21, 23, 59, 59, 7),
      startedAt: Date.UTC(2026, 10, 22, 0, 0, 0, 42),
      finishedAt: Date.UTC(2026, 10, 22, 0, 0, 1, 999),
      durationMs: 1957.6,
      resultSummary: { rows: 2, note: 'a\nb' },
      errorCode: 'bad_input',
      errorMessage: 'line one\nline two é',
      at: Date.UTC(2026, 10, 22, 0, 0, 1, 999),
    };
    expect(auditLine(full)).toBe(generic(full));
    const sparse: AuditEvent = {
      ...full,
      requestedBy: undefined,
      finishedAt: undefined,
      durationMs: undefined,
      resultSummary: undefined,
      errorCode: undefined,
      errorMessage: undefined,
      status: 'active',
    };
    expect(auditLine(sparse)).toBe(generic(sparse));
    expect(auditLine(sparse).split('\t')).toHaveLength(AUDIT_COLUMNS.length);
  });

  test('isoTime writes what Date#toISOString writes, across seconds and back again', () => {
    const base = Date.UTC(2026, 0, 1, 0, 0, 0, 0);
    for (const offset of [0, 5, 99, 100, 999, 1000, 1001, -1, 61_000, 5, 86_400_123, 1000.7])
      expect(isoTime(base + offset)).toBe(new Date(Math.trunc(base + offset)).toISOString());
    expect(isoTime(undefined)).toBe('\\N');
  });
});
