import { describe, expect, test } from 'vitest';
import { AUDIT_COLUMNS, auditLine, type AuditEvent } from '../../src/control/audit-outbox.ts';
import { copyLine } from '../../src/stores/copy-text.ts';

/** The generic encoding the hand-written auditLine must match: a row object over AUDIT_COLUMNS. */
function generic(e: AuditEvent): string {
  const whole = (n: number | undefined) =>
    n === undefined || !Number.isFinite(n) ? undefined : Math.round(n);
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
      enqueued_ms: whole(e.enqueuedAt),
      started_ms: whole(e.startedAt),
      duration_ms: whole(e.durationMs === undefined ? undefined : Math.min(e.durationMs, 2 ** 31 - 1)),
      result_summary: e.resultSummary,
      error_code: e.errorCode,
      error_message: e.errorMessage,
      recorded_ms: whole(e.at),
      run_id: e.runId,
    },
    AUDIT_COLUMNS,
  );
}

describe('auditLine', () => {
  const full: AuditEvent = {
    prefix: 'dbfleet',
    queue: 'load-fixtures',
    jobId: 'job\t1',
    runId: '3b241101-e2bb-4255-8caf-4136c566a962',
    tenant: 'acme',
    requestedBy: 'ops\\me',
    payloadDigest: 'sha256:ab',
    status: 'failed',
    attempt: 3,
    enqueuedAt: Date.UTC(2026, 10, 21, 23, 59, 59, 7),
    startedAt: Date.UTC(2026, 10, 22, 0, 0, 0, 42),
    durationMs: 1957.6,
    resultSummary: { rows: 2, note: 'a\nb' },
    errorCode: 'bad_input',
    errorMessage: 'line one\nline two é',
    at: Date.UTC(2026, 10, 22, 0, 0, 1, 999),
  };

  test('equals copyLine over AUDIT_COLUMNS, for every column filled or empty', () => {
    expect(auditLine(full)).toBe(generic(full));
    const sparse: AuditEvent = {
      ...full,
      requestedBy: undefined,
      durationMs: undefined,
      resultSummary: undefined,
      errorCode: undefined,
      errorMessage: undefined,
      runId: undefined,
      status: 'active',
    };
    expect(auditLine(sparse)).toBe(generic(sparse));
    expect(auditLine(sparse).split('\t')).toHaveLength(AUDIT_COLUMNS.length);
  });

  test('writes times as whole epoch milliseconds, and a time that is not a number as null', () => {
    const cols = auditLine({ ...full, startedAt: 1000.6, enqueuedAt: NaN }).split('\t');
    expect(cols[AUDIT_COLUMNS.indexOf('started_ms')]).toBe('1001');
    expect(cols[AUDIT_COLUMNS.indexOf('enqueued_ms')]).toBe('\\N');
    expect(cols[AUDIT_COLUMNS.indexOf('duration_ms')]).toBe('1958');
    expect(cols[AUDIT_COLUMNS.indexOf('recorded_ms')]).toBe(String(full.at));
    expect(cols.at(-1)).toBe(`${full.runId}\n`);
    const month = auditLine({ ...full, durationMs: 31 * 24 * 3600 * 1000 }).split('\t');
    expect(month[AUDIT_COLUMNS.indexOf('duration_ms')]).toBe(String(2 ** 31 - 1)); // integer column
  });
});
