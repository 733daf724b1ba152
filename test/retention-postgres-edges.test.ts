/**
 * PostgreSQL retention at its edges, with the tenant's sessions in a time zone far from UTC: a time
 * column with a precision, a `where` list holding null, a row another table still references, a
 * primary key of two columns.
 */
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
      ['two_column_key', 42],
    ]);
    const real = await (await client.enqueue('cleanup', { tenant: tenant.id })).waitForResult();
    expect(real.policies.map((p) => [p.name, p.matched, p.deleted, p.skipped])).toEqual([
      ['precise', 1, 1, 0],
      ['naive', 1, 1, 0],
      ['nullable_kind', 2, 2, 0],
      ['referenced', 35, 33, 2],
      ['two_column_key', 42, 42, 0],
    ]);
    expect(real.policies.at(-1)!.batches).toBe(Math.ceil(60 / 7));
    expect(await ids('ev')).toEqual([2]);
    expect(await ids('ev_naive')).toEqual([2]);
    expect(await ids('kinds')).toEqual([3, 4]);
    expect(await ids('parents')).toEqual([3, 17]);
    const pairs = await tenant.pg.withClient((c) =>
      c.query<{ k: string }>(`SELECT a || b AS k FROM pairs ORDER BY a, b`),
    );
    expect(pairs.rows.map((r) => r.k)).toEqual(
      ['x', 'y', 'z'].flatMap((a) => [3, 6, 9, 12, 15, 18].map((b) => `${a}${b}`)),
    );
  });
});
