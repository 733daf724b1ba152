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

    expect(await new ControlDb(scratch, 'p').migrate()).toEqual(
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

  test('5 keys rejections by run and gives each existing tenant to the deployments whose jobs ran for it', async ({
    scratch,
  }) => {
    await migrateTo(scratch, 4);
    await scratch.query(`INSERT INTO dbfleet.tenants (id) VALUES ('acme'), ('globex'), ('initech')`);
    const ranFor = (prefix: string, tenant: string) =>
      scratch.query(
        `INSERT INTO dbfleet.job_event_log (prefix, queue, job_id, tenant, payload_digest, status, attempt, recorded_ms)
         VALUES ($1, 'migrate', '1', $2, 'sha256:00', 'completed', 1, 0)`,
        [prefix, tenant],
      );
    await ranFor('blue', 'acme');
    await ranFor('green', 'acme');
    await ranFor('blue', 'initech');
    await scratch.query(
      `INSERT INTO dbfleet.load_rejections (prefix, job_id, line, reason) VALUES ('p', '7', 3, 'email: Invalid email address')`,
    );

    // Whoever migrates first (here a throwaway deployment) claims nothing.
    await new ControlDb(scratch, 'test-0001').migrate();

    const [blue, green, other] = ['blue', 'green', 'test-0001'].map((p) => new ControlDb(scratch, p));
    expect((await blue!.listTenants()).map((t) => t.id)).toEqual(['acme', 'globex', 'initech']);
    expect((await green!.listTenants()).map((t) => t.id)).toEqual(['acme', 'globex']);
    expect((await other!.listTenants()).map((t) => t.id)).toEqual(['globex']); // shared: never used
    expect(await green!.tenantExists('initech')).toBe(false);
    // A new registration is the deployment's own; a shared one stays visible to all.
    expect(await green!.addTenant('initech')).toBe(true);
    expect(await green!.addTenant('globex')).toBe(false);
    expect(await green!.forgetTenant('initech')).toBe(true);
    expect(await blue!.tenantExists('initech')).toBe(true);
    // Rows from before are read under the run key their load used then; a worker of the version
    // before, inserting without a run id during the upgrade, gets that key too.
    await scratch.query(
      `INSERT INTO dbfleet.load_rejections (prefix, job_id, line, reason) VALUES ('p', '7', 4, 'not valid JSON')`,
    );
    expect(await blue!.rejections('p:7')).toEqual([
      { line: 3, reason: 'email: Invalid email address' },
      { line: 4, reason: 'not valid JSON' },
    ]);
    // ... and an old worker's tenants add registers a shared tenant.
    await scratch.query(`INSERT INTO dbfleet.tenants (id) VALUES ('hooli')`);
    expect(await other!.tenantExists('hooli')).toBe(true);
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
    const applied = await Promise.all([
      new ControlDb(scratch, 'p').migrate(),
      new ControlDb(scratch, 'p').migrate(),
    ]);
    expect(applied.flat().sort((a, b) => a - b)).toEqual(controlMigrations.map((m) => m.version));
  });
});
