/**
 * PostgreSQL retention at its edges, with the tenant's sessions in a time zone far from UTC: a time
 * column with a precision, a `where` list holding null, a row another table still references, a
 * primary key of two columns.
 */
import type { TenantHandle } from './support/fixtures.ts';
// (A type only: erased, so nothing loads before the zone is set below.)
const url = new URL(process.env.DBFLEET_TENANT_POSTGRES_URL!);
url.searchParams.set('options', '-c timezone=America/New_York');
process.env.DBFLEET_TENANT_POSTGRES_URL = url.toString();

const { describe, expect } = await import('vitest');
const { defineConfig } = await import('../src/config/define.ts');
const { test } = await import('./support/fixtures.ts');

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

describe('PostgreSQL retention edges', () => {
  test.override({
    config: defineConfig({
      retention: [
        { name: 'precise', store: 'postgres', target: 'ev', timeField: 'at', olderThanDays: 7 },
        { name: 'naive', store: 'postgres', target: 'ev_naive', timeField: 'at', olderThanDays: 7 },
        {
          name: 'nullable_kind',
          store: 'postgres',
          target: 'kinds',
          timeField: 'at',
          olderThanDays: 7,
          where: { kind: [null, 'a'] },
        },
        {
          name: 'referenced',
          store: 'postgres',
          target: 'parents',
          timeField: 'at',
          olderThanDays: 7,
          batch: { initialSize: 10, minSize: 10, maxSize: 10, pauseMs: 0 },
        },
        // Values a cast to the column's declared type would cut or round into the stored ones.
        {
          name: 'cut_text',
          store: 'postgres',
          target: 'coded',
          timeField: 'at',
          olderThanDays: 7,
          where: { v: 'abcdefgh' },
        },
        {
          name: 'rounded',
          store: 'postgres',
          target: 'coded',
          timeField: 'at',
          olderThanDays: 7,
          where: { amount: 1.005 },
        },
        {
          name: 'two_column_key',
          store: 'postgres',
          target: 'pairs',
          timeField: 'at',
          olderThanDays: 7,
          batch: { initialSize: 7, minSize: 7, maxSize: 7, pauseMs: 0 },
        },
      ],
    }),
  });

  test('precise and naive times read right in any session zone; null in a where list; referenced rows left and counted', async ({
    tenant,
    client,
    startWorker,
  }) => {
    const started = Date.now();
    const cutoff = started - 7 * DAY;
    await tenant.pg.withClient(async (c) => {
      expect((await c.query('SHOW timezone')).rows[0].TimeZone).toBe('America/New_York');
      await c.query('CREATE TABLE ev (id int PRIMARY KEY, at timestamptz(3))');
      // An hour past the cutoff goes; two hours short of it stays (a zone offset away either side).
      await c.query('INSERT INTO ev VALUES (1, $1), (2, $2)', [
        new Date(cutoff - HOUR),
        new Date(cutoff + 2 * HOUR),
      ]);
      await c.query('CREATE TABLE ev_naive (id int PRIMARY KEY, at timestamp(0))');
      // A time without zone is UTC: written as UTC text.
      const utc = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
      await c.query('INSERT INTO ev_naive VALUES (1, $1), (2, $2)', [
        utc(cutoff - HOUR),
        utc(cutoff + 2 * HOUR),
      ]);
      await c.query('CREATE TABLE kinds (id int PRIMARY KEY, at timestamptz, kind text)');
      await c.query(`INSERT INTO kinds VALUES (1, $1, NULL), (2, $1, 'a'), (3, $1, 'b'), (4, now(), NULL)`, [
        new Date(cutoff - DAY),
      ]);
      await c.query('CREATE TABLE parents (id int PRIMARY KEY, at timestamptz NOT NULL)');
      await c.query(`INSERT INTO parents SELECT i, $1 FROM generate_series(1, 35) i`, [
        new Date(cutoff - DAY),
      ]);
      await c.query(
        'CREATE TABLE children (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES parents (id))',
      );
      await c.query('INSERT INTO children VALUES (1, 3), (2, 17), (3, 17)');
      await c.query(
        'CREATE TABLE coded (id int PRIMARY KEY, at timestamptz, v varchar(5), amount numeric(10,2))',
      );
      await c.query(`INSERT INTO coded VALUES (1, $1, 'abcde', 1.01)`, [new Date(cutoff - DAY)]);
      // Walked by (a, b) in batches of 7 keys: every third b stays, in each a.
      await c.query('CREATE TABLE pairs (a text, b int, at timestamptz NOT NULL, PRIMARY KEY (a, b))');
      await c.query(
        `INSERT INTO pairs SELECT a, b, CASE WHEN b % 3 = 0 THEN now() ELSE $1 END
           FROM unnest(ARRAY['x', 'y', 'z']) a, generate_series(1, 20) b`,
        [new Date(cutoff - DAY)],
      );
    });
    const ids = async (table: string) =>
      (
        await tenant.pg.withClient((c) => c.query<{ id: number }>(`SELECT id FROM ${table} ORDER BY id`))
      ).rows.map((r) => r.id);
    startWorker();
    const dry = await (await client.enqueue('cleanup', { tenant: tenant.id, dryRun: true })).waitForResult();
    expect(dry.policies.map((p) => [p.name, p.matched])).toEqual([
      ['precise', 1],
      ['naive', 1],
      ['nullable_kind', 2],
      ['referenced', 35],
      ['cut_text', 0],
      ['rounded', 0],
      ['two_column_key', 42],
    ]);
    const real = await (await client.enqueue('cleanup', { tenant: tenant.id })).waitForResult();
    expect(real.policies.map((p) => [p.name, p.matched, p.deleted, p.skipped])).toEqual([
      ['precise', 1, 1, 0],
      ['naive', 1, 1, 0],
      ['nullable_kind', 2, 2, 0],
      ['referenced', 35, 33, 2],
      ['cut_text', 0, 0, 0],
      ['rounded', 0, 0, 0],
      ['two_column_key', 42, 42, 0],
    ]);
    expect(real.policies.at(-1)!.batches).toBe(Math.ceil(60 / 7));
    expect(await ids('ev')).toEqual([2]);
    expect(await ids('ev_naive')).toEqual([2]);
    expect(await ids('kinds')).toEqual([3, 4]);
    expect(await ids('parents')).toEqual([3, 17]);
    expect(await ids('coded')).toEqual([1]);
    const pairs = await tenant.pg.withClient((c) =>
      c.query<{ k: string }>(`SELECT a || b AS k FROM pairs ORDER BY a, b`),
    );
    expect(pairs.rows.map((r) => r.k)).toEqual(
      ['x', 'y', 'z'].flatMap((a) => [3, 6, 9, 12, 15, 18].map((b) => `${a}${b}`)),
    );
  });
});

/** A table `ev` of `n` rows, ids 1..n, all 30 days old. */
const expiredRows = (tenant: TenantHandle, n: number) =>
  tenant.pg.withClient(async (c) => {
    await c.query('CREATE TABLE ev (id int PRIMARY KEY, at timestamptz)');
    await c.query(`INSERT INTO ev SELECT i, now() - interval '30 days' FROM generate_series(1, $1::int) i`, [
      n,
    ]);
  });

describe('a where value its column cannot hold', () => {
  test.override({
    config: defineConfig({
      retention: [
        { name: 'fine', store: 'postgres', target: 'ev', timeField: 'at', olderThanDays: 7 },
        {
          name: 'bad',
          store: 'postgres',
          target: 'ev',
          timeField: 'at',
          olderThanDays: 7,
          where: { id: ['1', 'x1'] },
        },
      ],
    }),
  });
  test('fails the job before any policy deletes, naming the column and type, not the value', async ({
    tenant,
    client,
    startWorker,
  }) => {
    await expiredRows(tenant, 1);
    startWorker();
    const job = await client.enqueue('cleanup', { tenant: tenant.id });
    const err = await job.waitForResult({ timeoutMs: 60_000 }).catch((e: unknown) => e as Error);
    expect(String(err)).toContain(
      'postgres ev (policy bad): where id: a value is not a valid integer (22P02)',
    );
    expect(String(err)).not.toContain('x1');
    const { rows } = await tenant.pg.withClient((c) => c.query('SELECT id FROM ev'));
    expect(rows).toEqual([{ id: 1 }]);
  });
});

describe('a batch meeting one short lock after another', () => {
  test.override({
    config: defineConfig({
      retention: [
        {
          name: 'locked',
          store: 'postgres',
          target: 'ev',
          timeField: 'at',
          olderThanDays: 7,
          batch: {
            targetMs: 10,
            lockTimeoutMs: 1_000,
            initialSize: 1_000,
            minSize: 10,
            maxSize: 1_000,
            pauseMs: 0,
          },
        },
      ],
    }),
  });
  test('gives up at lockTimeoutMs + 10 x targetMs, however short each wait, and is tried again smaller', async ({
    tenant,
    client,
    startWorker,
  }) => {
    await expiredRows(tenant, 1_000);
    // Eight writers each hold one expired row, and let go one after another, 250 ms apart: every
    // wait is a quarter of the lock timeout, all of them together 2 s.
    const releases: (() => void)[] = [];
    const holders = [100, 200, 300, 400, 500, 600, 700, 800].map((id) =>
      tenant.pg.withClient(async (c) => {
        await c.query('BEGIN');
        await c.query('SELECT 1 FROM ev WHERE id = $1 FOR UPDATE', [id]);
        let release!: () => void;
        const released = new Promise<void>((r) => (release = r));
        releases.push(release);
        await released;
        await c.query('COMMIT');
      }),
    );
    await expect.poll(() => releases.length, { timeout: 10_000 }).toBe(8);
    startWorker();
    const job = await client.enqueue('cleanup', { tenant: tenant.id });
    // Once the batch waits on the first lock, the writers let go one by one.
    const waiting = async () =>
      Number(
        (
          await tenant.pg.withClient((c) =>
            c.query<{ n: string }>(
              `SELECT count(*) AS n FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND query LIKE 'WITH upper AS%' AND query LIKE '%' || $1 || '%'`,
              [tenant.pg.schema],
            ),
          )
        ).rows[0]!.n,
      );
    await expect.poll(waiting, { timeout: 30_000, interval: 10 }).toBe(1);
    for (const release of releases) {
      release();
      await new Promise((r) => setTimeout(r, 250));
    }
    await Promise.all(holders);
    const result = await job.waitForResult({ timeoutMs: 60_000 });
    expect(result.policies[0]).toMatchObject({ matched: 1_000, deleted: 1_000 });
    // The batch timeout is 1.1 s: no batch that committed waited out all eight locks.
    expect(result.policies[0]!.longestBatchMs).toBeLessThan(1_500);
  });
});
