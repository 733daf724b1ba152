/**
 * The control database's own migrations on a database of its own: an upgrade keeps every row an
 * earlier version wrote, and readers see the same columns before and after.
 */
import pg from 'pg';
import { describe, expect } from 'vitest';
import { ControlDb } from '../src/control/control-db.ts';
import { controlMigrations } from '../src/control/migrations.ts';
import { test as base, uniqueId } from './support/fixtures.ts';

const test = base.extend<{ scratch: pg.Pool }>({
  scratch: async ({ leakGuard: _ }, use) => {
    const db = uniqueId('ctl_');
    const admin = new pg.Client({ connectionString: process.env.DBFLEET_CONTROL_DATABASE_URL });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${db}`);
    const url = new URL(process.env.DBFLEET_CONTROL_DATABASE_URL!);
    url.pathname = `/${db}`;
    const pool = new pg.Pool({ connectionString: url.href });
    try {
      await use(pool);
    } finally {
      await pool.end();
      await admin.query(`DROP DATABASE ${db}`);
      await admin.end();
    }
  },
});

/** Brings a fresh database to `version` the way ControlDb.migrate would have at that release. */
async function migrateTo(pool: pg.Pool, version: number): Promise<void> {
  await pool.query(`CREATE SCHEMA dbfleet;
    CREATE TABLE dbfleet.schema_history (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
  for (const m of controlMigrations.filter((m) => m.version <= version)) {
    await pool.query(m.sql);
    await pool.query('INSERT INTO dbfleet.schema_history (version, name) VALUES ($1, $2)', [
      m.version,
      m.name,
    ]);
  }
}

describe('control database migrations', () => {
  test('4 moves version 3’s audit events into job_event_log; job_events and job_runs read the same', async ({
    scratch,
  }) => {
    await migrateTo(scratch, 3);
    await scratch.query(
      `INSERT INTO dbfleet.job_events (prefix, queue, job_id, tenant, requested_by, payload_digest, status, attempt,
         enqueued_at, started_at, finished_at, duration_ms, result_summary, error_code, error_message, recorded_at)
       VALUES
         ('p', 'backup', 'j1', 'acme', 'ops', 'sha256:01', 'retrying', 1, '2026-11-21T10:00:00.001Z',
          '2026-11-21T10:00:00.250Z', NULL, 40, NULL, 'network', 'reset', '2026-11-21T10:00:00.290Z'),
         ('p', 'backup', 'j1', 'acme', 'ops', 'sha256:01', 'completed', 2, '2026-11-21T10:00:00.001Z',
          '2026-11-21T10:00:01.000Z', '2026-11-21T10:00:01.500Z', 500, '{"bytes": 12}', NULL, NULL,
          '2026-11-21T10:00:01.500Z')`,
    );
    const readBack = async () =>
      (await scratch.query('SELECT * FROM dbfleet.job_events ORDER BY id')).rows.map(
        ({ id: _, ...row }: Record<string, unknown>) => row,
      );
    const before = await readBack();
    const runBefore = (await scratch.query('SELECT * FROM dbfleet.job_runs')).rows;

    expect(await new ControlDb(scratch).migrate()).toEqual(
      controlMigrations.filter((m) => m.version > 3).map((m) => m.version),
    );

    // The same columns and values, and since migration 7 a run id (unknown for events from before).
    expect(await readBack()).toEqual(before.map((row) => ({ ...row, run_id: null })));
    expect((await scratch.query('SELECT * FROM dbfleet.job_runs')).rows).toEqual(
      runBefore.map((row) => ({ ...row, run_id: null })),
    );
    expect(runBefore).toMatchObject([
      {
        status: 'completed',
        attempts: 2,
        started_at: new Date('2026-11-21T10:00:00.250Z'),
        finished_at: new Date('2026-11-21T10:00:01.500Z'),
        result_summary: { bytes: 12 },
      },
    ]);
    const { rows } = await scratch.query<{ n: string }>('SELECT count(*) AS n FROM dbfleet.job_event_log');
    expect(Number(rows[0]!.n)).toBe(2);
  });

  test('5 keys load rejections by run and gives existing tenants to the deployment that upgrades', async ({
    scratch,
  }) => {
    await migrateTo(scratch, 4);
    await scratch.query(`INSERT INTO dbfleet.tenants (id) VALUES ('acme'), ('globex')`);
    await scratch.query(
      `INSERT INTO dbfleet.load_rejections (prefix, job_id, line, reason) VALUES ('p', '7', 3, 'email: Invalid email address')`,
    );

    await new ControlDb(scratch, 'blue').migrate();

    const blue = new ControlDb(scratch, 'blue');
    const green = new ControlDb(scratch, 'green');
    expect((await blue.listTenants()).map((t) => t.id)).toEqual(['acme', 'globex']);
    expect(await green.listTenants()).toEqual([]);
    expect(await green.tenantExists('acme')).toBe(false);
    // The same id in another deployment is a tenant of its own.
    expect(await green.addTenant('acme')).toBe(true);
    expect(await green.forgetTenant('acme')).toBe(true);
    expect(await blue.tenantExists('acme')).toBe(true);
    // Rows from before are read under the run key their load used then.
    expect(await blue.rejections('p:7')).toEqual([{ line: 3, reason: 'email: Invalid email address' }]);
  });

  test('6 adds audit_dead_letters on top of 4 alone, and keeps an entry byte for byte', async ({
    scratch,
  }) => {
    await migrateTo(scratch, 4);
    await scratch.query(controlMigrations.find((m) => m.version === 6)!.sql);
    // A NUL, a backslash, a tab and a byte that is not UTF-8: what a malformed entry may hold.
    const fields = [Buffer.from('e4'), Buffer.from([0x00, 0x5c, 0x09, 0xff, 0x0a])];
    await scratch.query(
      `INSERT INTO dbfleet.audit_dead_letters (prefix, entry_id, fields, error_code)
       VALUES ('p', '1700000000000-0', $1, '22021')`,
      [fields],
    );
    expect((await scratch.query('SELECT entry_id, fields FROM dbfleet.audit_dead_letters')).rows).toEqual([
      { entry_id: '1700000000000-0', fields },
    ]);
  });

  test('a fresh database gets every version once, however many processes start together', async ({
    scratch,
  }) => {
    const applied = await Promise.all([new ControlDb(scratch).migrate(), new ControlDb(scratch).migrate()]);
    expect(applied.flat().sort()).toEqual(controlMigrations.map((m) => m.version));
  });
});
