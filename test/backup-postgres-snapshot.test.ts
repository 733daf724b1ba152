/** A backup's connections read one instant of the tenant, whatever is written meanwhile. */
import { expect } from 'vitest';
import { exportSnapshot } from '../src/backup/postgres-snapshot.ts';
import { withPoolClient } from '../src/stores/postgres.ts';
import { test } from './support/fixtures.ts';

test('connections that join the exported snapshot see the tables as they were when it was taken', async ({
  tenant,
  deps,
}) => {
  const pool = deps.postgres.pool(deps.tenants.locate(tenant.id).postgresUrl);
  const count = (c: { query: (q: string) => Promise<{ rows: { n: number }[] }> }) =>
    c.query(`SELECT count(*)::int AS n FROM "${tenant.pg.schema}".users`).then((r) => r.rows[0]!.n);
  const insert = (from: number, to: number) =>
    pool.query(
      `INSERT INTO "${tenant.pg.schema}".users (id, email, display_name, created_at)
       SELECT i, 'u' || i || '@example.test', 'U', now() FROM generate_series($1::int, $2::int) i`,
      [from, to],
    );
  await insert(1, 10);
  await withPoolClient(pool, async (leader) => {
    const snapshot = await exportSnapshot(leader);
    try {
      expect(snapshot.lsn).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
      await insert(11, 25); // committed after the snapshot: not in the backup
      await withPoolClient(pool, async (reader) => {
        await snapshot.join(reader);
        try {
          expect(await count(reader)).toBe(10);
          expect(await count(leader)).toBe(10);
          // Read only: a backup cannot change what it reads.
          await expect(reader.query(`DELETE FROM "${tenant.pg.schema}".users`)).rejects.toMatchObject({
            code: '25006',
          });
        } finally {
          await reader.query('ROLLBACK');
        }
      });
    } finally {
      await snapshot.release();
    }
  });
  expect(await count(pool)).toBe(25);
});
