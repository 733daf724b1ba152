/**
 * The audit log's path: jobs append to a Redis outbox before they are acknowledged; drainers in every
 * worker copy it into dbfleet.job_events exactly once, whatever fails in between.
 */
import pg from 'pg';
import { describe, expect, vi } from 'vitest';
import { startBoard } from '../src/board/server.ts';
import { AuditDrain } from '../src/control/audit-drain.ts';
import { AUDIT_COLUMNS, auditLine, auditStreamKey, EVENT_FIELD } from '../src/control/audit-outbox.ts';
import { PermanentError } from '../src/errors.ts';
import { createLogger } from '../src/logger.ts';
import { createFleetMetrics, type FleetMetrics } from '../src/metrics.ts';
import type { Handler } from '../src/runtime/handler.ts';
import { handlers } from '../workers/index.ts';
import { eventually, test } from './support/fixtures.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';

const payload = (tenant: string, n: number) => ({
  tenant,
  target: { store: 'mongo' as const, name: 'sessions' },
  source: { type: 'inline' as const, rows: [{ n }] },
});
const result = {
  read: 1,
  loaded: 1,
  rejected: 0,
  sampleRejections: [],
  batches: 1,
  resumedFrom: 0,
  rowsPerSecond: 0,
};

async function events(deps: FleetDeps) {
  const { rows } = await deps.control.pool.query<{
    job_id: string;
    status: string;
    error_message: string | null;
  }>('SELECT job_id, status, error_message FROM dbfleet.job_events WHERE prefix = $1 ORDER BY id', [
    deps.prefix,
  ]);
  return rows;
}

const RUN_ID = '3b241101-e2bb-4255-8caf-4136c566a962';

const auditEvent = (deps: FleetDeps, jobId: string) => ({
  prefix: deps.prefix,
  queue: 'load-fixtures',
  jobId,
  runId: RUN_ID,
  tenant: 'acme',
  requestedBy: undefined,
  payloadDigest: 'sha256:00',
  status: 'completed' as const,
  at: Date.now(),
  attempt: 1,
  enqueuedAt: Date.now(),
  startedAt: Date.now(),
});

/** This prefix's audit dead letters, in stream order. */
async function deadLetters(deps: FleetDeps) {
  const { rows } = await deps.control.pool.query<{ entry_id: string; fields: Buffer[]; error_code: string }>(
    `SELECT entry_id, fields, error_code FROM dbfleet.audit_dead_letters WHERE prefix = $1
     ORDER BY split_part(entry_id, '-', 1)::bigint, split_part(entry_id, '-', 2)::bigint`,
    [deps.prefix],
  );
  return rows;
}

/** A line as a worker of the version before migration 4 wrote it (stream field 'e', ISO times). */
const v3Line = (prefix: string, jobId: string, recordedAt = '2026-11-21T10:00:01.500Z') =>
  [
    prefix,
    'load-fixtures',
    jobId,
    'acme',
    'ops',
    'sha256:00',
    'completed',
    '1',
    '2026-11-21T10:00:00.001Z',
    '2026-11-21T10:00:00.250Z',
    '2026-11-21T10:00:01.500Z',
    '1250',
    '{"rows":2}',
    '\\N',
    '\\N',
    recordedAt,
  ].join('\t') + '\n';

/** An event's COPY text line with one column's text replaced. */
function withColumn(line: string, column: (typeof AUDIT_COLUMNS)[number], text: string): string {
  const cols = line.slice(0, -1).split('\t');
  cols[AUDIT_COLUMNS.indexOf(column)] = text;
  return cols.join('\t') + '\n';
}

/** A gauge's value as a scrape would read it. */
async function gauge(metrics: FleetMetrics, name: string): Promise<number | undefined> {
  return (await metrics.registry.getSingleMetric(name)?.get())?.values[0]?.value;
}

/** The unlabelled samples of a Prometheus text page, by metric name. */
async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(url)).text();
  return new Map(
    [...text.matchAll(/^([a-z_]+) (\S+)$/gm)].map((m) => [m[1]!, Number(m[2])] as [string, number]),
  );
}

describe('audit log', () => {
  test('two workers, 300 jobs: one final event per job, stored exactly once, text kept intact', async ({
    deps,
    client,
    tenant,
    startWorker,
  }) => {
    const message = 'tab\there, newline\nthere, backslash \\ and é';
    const handler: Handler<'load-fixtures'> = async (p) => {
      const n = (p.source as { rows: { n: number }[] }).rows[0]!.n;
      if (n % 10 === 0) throw new PermanentError('invalid_source', message);
      return result;
    };
    const options = { handlers: { ...handlers, 'load-fixtures': handler }, concurrency: 8 };
    startWorker(options);
    startWorker(options);
    await client.enqueueBulk(
      'load-fixtures',
      Array.from({ length: 300 }, (_, n) => ({ payload: payload(tenant.id, n) })),
    );
    const queue = client.queue('load-fixtures');
    await vi.waitFor(
      async () => {
        const counts = await queue.getJobCounts('completed', 'failed');
        expect(counts).toEqual({ completed: 270, failed: 30 });
      },
      { timeout: 30_000, interval: 100 },
    );

    await vi.waitFor(async () => expect(await events(deps)).toHaveLength(300), { timeout: 10_000 });
    const rows = await events(deps);
    expect(new Set(rows.map((r) => r.job_id)).size).toBe(300);
    expect(rows.filter((r) => r.status === 'completed')).toHaveLength(270);
    const failed = rows.filter((r) => r.status === 'failed');
    expect(failed).toHaveLength(30);
    expect(failed[0]!.error_message).toBe(message);
    expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBe(0);
  });

  test('a drainer that dies between its commit and its trim repeats nothing', async ({ deps }) => {
    for (let i = 0; i < 10; i++) await deps.audit.record(auditEvent(deps, `job${i}`));
    await deps.audit.flushed(); // the drainers below read on other connections
    // The Redis client this drainer gets fails the trim, as if the process died right after COMMIT.
    const redis = deps.redis.duplicate();
    const failingTrim = new Proxy(redis, {
      get: (target, key) =>
        key === 'xtrim' ? () => Promise.reject(new Error('killed')) : Reflect.get(target, key, target),
    });
    try {
      const dying = new AuditDrain(failingTrim, deps.control.pool, deps.prefix, deps.log);
      await expect(dying.drainOnce()).rejects.toThrow('killed');
      expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBeGreaterThan(0);

      const next = new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log);
      await next.drainAll();
      expect((await events(deps)).map((r) => r.job_id)).toEqual(
        Array.from({ length: 10 }, (_, i) => `job${i}`),
      );
      expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  test('text PostgreSQL cannot hold (a NUL) is replaced, and the events after it are copied too', async ({
    deps,
  }) => {
    await deps.audit.record({
      ...auditEvent(deps, 'nul'),
      status: 'failed',
      requestedBy: 'ops\0me',
      errorCode: 'bad\0code',
      errorMessage: 'driver said \0\0',
    });
    await deps.audit.record(auditEvent(deps, 'after'));
    await deps.audit.flushed();
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();
    const { rows } = await deps.control.pool.query(
      'SELECT job_id, requested_by, error_code, error_message FROM dbfleet.job_events WHERE prefix = $1 ORDER BY id',
      [deps.prefix],
    );
    expect(rows).toEqual([
      {
        job_id: 'nul',
        requested_by: 'ops\uFFFDme',
        error_code: 'bad\uFFFDcode',
        error_message: 'driver said \uFFFD\uFFFD',
      },
      { job_id: 'after', requested_by: null, error_code: null, error_message: null },
    ]);
  });

  test('events workers of earlier versions appended (ISO times; no run id) are copied, in stream order', async ({
    deps,
  }) => {
    // What a version-3 worker appended during a rolling upgrade: its line format, field 'e'.
    const v3 = (jobId: string, status: string) =>
      [
        deps.prefix,
        'load-fixtures',
        jobId,
        'acme',
        'ops',
        'sha256:00',
        status,
        '1',
        '2026-11-21T10:00:00.001Z',
        '2026-11-21T10:00:00.250Z',
        status === 'completed' ? '2026-11-21T10:00:01.500Z' : '\\N',
        '1250',
        '{"rows":2}',
        '\\N',
        '\\N',
        '2026-11-21T10:00:01.500Z',
      ].join('\t') + '\n';
    const key = auditStreamKey(deps.prefix);
    await deps.redis.xadd(key, '*', 'e', v3('old1', 'completed'));
    // A worker of the version before migration 7: the current line without its last column.
    const e4 = auditLine({ ...auditEvent(deps, 'e4job'), runId: undefined }).replace(/\t\\N\n$/, '\n');
    await deps.redis.xadd(key, '*', 'e4', e4);
    await deps.audit.record(auditEvent(deps, 'new1'));
    await deps.audit.flushed();
    await deps.redis.xadd(key, '*', 'e', v3('old2', 'retrying') + v3('old3', 'completed'));
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();

    const { rows } = await deps.control.pool.query(
      `SELECT job_id, status, requested_by, started_at, finished_at, duration_ms, result_summary, recorded_at,
              run_id
       FROM dbfleet.job_events WHERE prefix = $1 ORDER BY id`,
      [deps.prefix],
    );
    expect(rows.map((r) => [r.job_id, r.run_id])).toEqual([
      ['old1', null],
      ['e4job', null],
      ['new1', RUN_ID],
      ['old2', null],
      ['old3', null],
    ]);
    const { run_id: _, ...old1 } = rows[0];
    rows[0] = old1;
    expect(rows[0]).toEqual({
      job_id: 'old1',
      status: 'completed',
      requested_by: 'ops',
      started_at: new Date('2026-11-21T10:00:00.250Z'),
      finished_at: new Date('2026-11-21T10:00:01.500Z'),
      duration_ms: 1250,
      result_summary: { rows: 2 },
      recorded_at: new Date('2026-11-21T10:00:01.500Z'),
    });
    expect(rows[3]).toMatchObject({ status: 'retrying', finished_at: null });
    expect(await deps.redis.xlen(key)).toBe(0);
  });

  test('events wait in Redis while the control database is unreachable', async ({ deps }) => {
    for (let i = 0; i < 5; i++) await deps.audit.record(auditEvent(deps, `job${i}`));
    const unreachable = new pg.Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' });
    try {
      const drain = new AuditDrain(deps.redis, unreachable, deps.prefix, deps.log);
      await expect(drain.drainOnce()).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await unreachable.end();
    }
    expect(await deps.redis.xlen(auditStreamKey(deps.prefix))).toBe(5);
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();
    expect(await events(deps)).toHaveLength(5);
  });

  test('an append Redis refuses is kept and sent again; until then jobs are not acknowledged', async ({
    deps,
    client,
    tenant,
    startWorker,
  }) => {
    // A key of the wrong type makes Redis refuse every append but not the acknowledgement after it.
    const key = auditStreamKey(deps.prefix);
    await deps.redis.set(key, 'not a stream');
    startWorker({ handlers: { ...handlers, 'load-fixtures': async () => result } });
    const first = await client.enqueue('load-fixtures', payload(tenant.id, 1));
    await first.waitForResult({ timeoutMs: 10_000 }); // its event went out before its ack: kept
    await deps.audit.flushed(); // the refusal may be read after the completion is announced
    expect(deps.audit.refusedEvents).toBe(1);

    const second = await client.enqueue('load-fixtures', payload(tenant.id, 2));
    const queue = client.queue('load-fixtures');
    await vi.waitFor(async () => expect((await queue.getJob(second.id))!.attemptsMade).toBe(1), {
      timeout: 10_000,
    });
    expect(await (await queue.getJob(second.id))!.getState()).not.toBe('completed');
    expect((await queue.getJob(second.id))!.failedReason).toMatch(/^\[audit_unavailable\]/);

    await deps.redis.del(key);
    await second.waitForResult({ timeoutMs: 30_000 });
    expect(deps.audit.refusedEvents).toBe(0);
    await vi.waitFor(async () => {
      expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', first.id)).toMatchObject({
        status: 'completed',
        attempts: 1,
      });
      expect(await deps.control.jobRun(deps.prefix, 'load-fixtures', second.id)).toMatchObject({
        status: 'completed',
        attempts: 2,
      });
    });
  });

  test('entries the drainer cannot copy go to the dead letters byte for byte; the events around them are copied once', async ({
    deps,
  }) => {
    const key = auditStreamKey(deps.prefix);
    const line = (jobId: string) => auditLine(auditEvent(deps, jobId));
    const append = async (field: string, body: string | Buffer) =>
      (await deps.redis.xadd(key, '*', field, body))!;
    const bad: { id: string; field: string; body: Buffer; code: string }[] = [];
    const appendBad = async (field: string, body: string | Buffer, code: string) => {
      const bytes = Buffer.from(body);
      bad.push({ id: await append(field, bytes), field, body: bytes, code });
    };

    // Each bad entry holds the word "private", which no log line may repeat.
    await append(EVENT_FIELD, line('a1'));
    await appendBad('x', 'private, and no events field', 'no_events_field');
    // PostgreSQL's end-of-data marker: without an error, it would ignore the lines after it.
    await appendBad(EVENT_FIELD, line('private') + '\\.\n', 'copy_ended_early');
    await append(EVENT_FIELD, line('a2') + line('a3'));
    await appendBad(EVENT_FIELD, 'private\tthree\tcolumns\n', '22P04'); // bad_copy_file_format
    await append('e', v3Line(deps.prefix, 'old1'));
    // é as one Latin-1 byte: not UTF-8.
    const latin1 = withColumn(line('u'), 'tenant', 'José private');
    await appendBad(EVENT_FIELD, Buffer.from(latin1, 'latin1'), '22021'); // character_not_in_repertoire
    await appendBad('e', v3Line(deps.prefix, 'old2', 'private time'), '22007'); // invalid_datetime_format
    await appendBad(EVENT_FIELD, withColumn(line('n'), 'attempt', 'private'), '22P02'); // invalid_text_representation
    await appendBad(EVENT_FIELD, withColumn(line('private'), 'recorded_ms', '\\N'), '23502'); // not_null_violation
    await append(EVENT_FIELD, line('a4'));

    const metrics = createFleetMetrics({ audit: deps });
    expect(await gauge(metrics, 'dbfleet_audit_backlog')).toBe(11);
    expect(await gauge(metrics, 'dbfleet_audit_dead_letters')).toBe(0);

    const logged: string[] = [];
    const log = createLogger('warn', { write: (line: string) => void logged.push(line) });
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, log).drainAll();

    expect((await events(deps)).map((r) => r.job_id)).toEqual(['a1', 'a2', 'a3', 'old1', 'a4']);
    expect(await deadLetters(deps)).toEqual(
      bad.map((b) => ({ entry_id: b.id, fields: [Buffer.from(b.field), b.body], error_code: b.code })),
    );
    expect(await deps.redis.xlen(key)).toBe(0);
    expect(await gauge(metrics, 'dbfleet_audit_backlog')).toBe(0);
    expect(await gauge(metrics, 'dbfleet_audit_dead_letters')).toBe(bad.length);

    // One warning per entry, naming it and its code: nothing of what the entry or the server said.
    const warnings = logged.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(warnings.map((w) => [w.entryId, w.code])).toEqual(bad.map((b) => [b.id, b.code]));
    expect(warnings.filter((w) => 'err' in w)).toEqual([]);
    expect(logged.join('')).not.toContain('private');

    // Drained again, nothing moves: no event copied twice, no entry dead twice.
    await deps.audit.record(auditEvent(deps, 'a5'));
    await deps.audit.flushed();
    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, log).drainAll();
    expect((await events(deps)).map((r) => r.job_id)).toEqual(['a1', 'a2', 'a3', 'old1', 'a4', 'a5']);
    expect(await deadLetters(deps)).toHaveLength(bad.length);
  });

  test('a transient error moves nothing to the dead letters: the batch waits and is retried', async ({
    deps,
  }) => {
    const key = auditStreamKey(deps.prefix);
    await deps.redis.xadd(key, '*', EVENT_FIELD, 'wrong\tshape\n');
    await deps.audit.record(auditEvent(deps, 'after'));
    await deps.audit.flushed();
    // Another session holds the event table: the drainer's COPY gives up waiting for it (55P03, a
    // lock timeout), an error of the moment, not of the data.
    const impatient = new pg.Pool({
      connectionString: process.env.DBFLEET_CONTROL_DATABASE_URL,
      options: '-c lock_timeout=200',
    });
    const holder = await deps.control.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE dbfleet.job_event_log IN EXCLUSIVE MODE');
      const drain = new AuditDrain(deps.redis, impatient, deps.prefix, deps.log);
      await expect(drain.drainOnce()).rejects.toMatchObject({ code: '55P03' });
    } finally {
      await holder.query('ROLLBACK');
      holder.release();
      await impatient.end();
    }
    expect(await deps.redis.xlen(key)).toBe(2);
    expect(await deadLetters(deps)).toEqual([]);

    await new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log).drainAll();
    expect((await events(deps)).map((r) => r.job_id)).toEqual(['after']);
    expect((await deadLetters(deps)).map((d) => d.error_code)).toEqual(['22P04']);
  });

  test('events in a newer line format wait for an upgraded drainer, neither copied nor dead-lettered', async ({
    deps,
  }) => {
    const key = auditStreamKey(deps.prefix);
    await deps.audit.record(auditEvent(deps, 'before'));
    await deps.audit.flushed();
    await deps.redis.xadd(key, '*', 'e99', 'a\tline\tof\tthe\tnext\tversion\n');
    await deps.audit.record(auditEvent(deps, 'after'));
    await deps.audit.flushed();
    const drain = new AuditDrain(deps.redis, deps.control.pool, deps.prefix, deps.log);
    await drain.drainAll();
    expect(await drain.drainOnce()).toBe('busy');
    expect((await events(deps)).map((r) => r.job_id)).toEqual(['before']);
    expect(await deadLetters(deps)).toEqual([]);
    // The newer entry and everything behind it stay in the stream, in order.
    const left = await deps.redis.xrange(key, '-', '+');
    expect(left.map(([, fields]) => fields[0])).toEqual(['e99', EVENT_FIELD]);
  });

  test("the board's /metrics and a worker's --metrics-port report the audit backlog and dead letters", async ({
    deps,
    spawnWorker,
  }) => {
    const key = auditStreamKey(deps.prefix);
    await deps.redis.xadd(key, '*', EVENT_FIELD, 'wrong\tshape\n');
    await deps.audit.record(auditEvent(deps, 'good'));
    await deps.audit.flushed();
    const board = await startBoard(deps, '127.0.0.1', 0);
    try {
      const before = await scrape(`${board.url}/metrics`);
      expect(before.get('dbfleet_audit_backlog')).toBe(2);
      expect(before.get('dbfleet_audit_dead_letters')).toBe(0);

      // The worker's own drainer moves the bad entry and copies the good event.
      const port = 20_000 + Math.floor(Math.random() * 20_000);
      const worker = await spawnWorker({ args: ['--metrics-port', String(port)] });
      const after = await eventually(async () => {
        const samples = await scrape(`http://127.0.0.1:${port}/metrics`);
        return samples.get('dbfleet_audit_backlog') === 0 ? samples : undefined;
      }, 15_000);
      expect(after.get('dbfleet_audit_dead_letters')).toBe(1);
      expect((await events(deps)).map((r) => r.job_id)).toEqual(['good']);
      worker.proc.kill('SIGTERM');
      expect((await worker.exited).code).toBe(0);

      const board2 = await scrape(`${board.url}/metrics`);
      expect(board2.get('dbfleet_audit_backlog')).toBe(0);
      expect(board2.get('dbfleet_audit_dead_letters')).toBe(1);
    } finally {
      await board.close();
    }
  });
});
