/**
 * A tenant's tables out through backup objects (compressed, sealed) and into a schema of another
 * name, with its structure: every row identical, sequences where they were.
 */
import type pg from 'pg';
import { expect } from 'vitest';
import { newDataKey } from '../src/backup/keys.ts';
import { readObject, writeObject } from '../src/backup/object-codec.ts';
import { copyTableIn, copyTableOut } from '../src/backup/postgres-data.ts';
import {
  applyPostgresConstraints,
  createPostgresTables,
  readPostgresSchema,
} from '../src/backup/postgres-schema.ts';
import { LocalObjectStore } from '../src/storage/local.ts';
import { inTransaction } from '../src/stores/postgres.ts';
import { test } from './support/fixtures.ts';

/** An ordered digest of every row of every table. */
async function digests(c: pg.PoolClient, schema: string): Promise<Record<string, string>> {
  const { rows } = await c.query<{ relname: string }>(
    `SELECT relname FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r' ORDER BY 1`,
    [schema],
  );
  const out: Record<string, string> = {};
  for (const { relname } of rows) {
    const { rows: d } = await c.query<{ digest: string; n: number }>(
      `SELECT md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS digest, count(*)::int AS n
       FROM "${schema}"."${relname}" t`,
    );
    out[relname] = `${d[0]!.n}:${d[0]!.digest}`;
  }
  return out;
}

test('every row of every table comes back identical through sealed backup objects, under another schema name', async ({
  tenant,
  tmp,
}) => {
  const source = tenant.pg.schema;
  const copy = `${source}_restored`;
  const store = new LocalObjectStore(tmp);
  const dataKey = newDataKey();
  await tenant.pg.withClient(async (c) => {
    await c.query(`
      INSERT INTO users (id, email, display_name, country, birth_year, created_at)
      SELECT i, 'u' || i || '@example.test', E'Name\\t' || i || E'\\n\\\\ é ☃', CASE WHEN i % 3 = 0 THEN NULL ELSE 'FR' END,
             1950 + i % 60, '2026-01-01T00:00:00Z'::timestamptz + i * interval '1 minute'
      FROM generate_series(1, 5000) i;
      INSERT INTO playlists (id, user_id, name, is_public, created_at)
      SELECT i, 1 + i % 5000, 'list ' || i, i % 2 = 0, now() FROM generate_series(1, 2000) i;
      CREATE TABLE counters (id bigserial PRIMARY KEY, payload jsonb, amount numeric(12, 4), at date);
      INSERT INTO counters (payload, amount, at)
      SELECT jsonb_build_object('k', i, 'nested', jsonb_build_array(i, NULL, 'x')), i / 7.0, DATE '2020-02-29' + i
      FROM generate_series(1, 300) i;`);
    try {
      // Out: one snapshot for the structure and every table.
      const { script, objects } = await inTransaction(c, async () => {
        await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY');
        const script = await readPostgresSchema(c, source);
        const objects = [];
        for (const { name } of script.tables) {
          const out = copyTableOut(c, source, name);
          const info = await writeObject(out.stream, {
            store,
            key: `b1/postgres/${name}`,
            name: `postgres/${name}`,
            compression: 'zstd',
            dataKey,
          });
          objects.push({ table: name, info, rows: out.rows() });
        }
        return { script, objects };
      });
      expect(objects.find((o) => o.table === 'users')!.rows).toBe(5000);

      // In: bare tables, the rows, then constraints, indexes and sequences.
      await c.query(`CREATE SCHEMA "${copy}"`);
      await inTransaction(c, async () => {
        await createPostgresTables(c, copy, script);
        for (const o of objects)
          expect(await copyTableIn(c, copy, o.table, await readObject(store, o.info, dataKey))).toBe(o.rows);
        await applyPostgresConstraints(c, copy, script);
      });
      expect(await digests(c, copy)).toEqual(await digests(c, source));
      const next = await c.query(`SELECT nextval('"${copy}".counters_id_seq') AS id`);
      expect(next.rows[0].id).toBe('301');
    } finally {
      await c.query(`DROP SCHEMA IF EXISTS "${copy}" CASCADE`);
    }
  });
});
