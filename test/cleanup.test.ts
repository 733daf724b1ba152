/** What tests and benchmarks use to leave nothing behind: it must take only what is theirs. */
import { describe, expect } from 'vitest';
import { deleteKeysUnder } from '../src/redis.ts';
import { test, uniqueId } from './support/fixtures.ts';

describe('cleanup after a run', () => {
  test('deleteKeysUnder takes every key under the prefix and nothing else', async ({ deps }) => {
    const base = `${deps.prefix}-cleanup`;
    const mine = Array.from({ length: 2500 }, (_, i) => `${base}:queue:${i}`);
    const others = [`${base}x:queue:1`, `${base}`, `other-${base}:queue:1`];
    const glob = `${base}*?[`; // a prefix with glob characters matches only itself
    await deps.redis.mset(
      Object.fromEntries([...mine, ...others, `${glob}:k`, `${base}*?[x:k`].map((k) => [k, '1'])),
    );
    try {
      await deleteKeysUnder(deps.redis, base);
      expect(await deps.redis.exists(...mine)).toBe(0);
      expect(await deps.redis.exists(...others)).toBe(others.length);

      await deleteKeysUnder(deps.redis, glob);
      expect(await deps.redis.exists(`${glob}:k`)).toBe(0);
      expect(await deps.redis.exists(`${base}*?[x:k`)).toBe(1);
    } finally {
      await deps.redis.del(...others, `${base}*?[x:k`);
    }
  });

  test('forgetPrefix deletes that prefix’s audit rows, cursor and dead letters only', async ({ deps }) => {
    const insert = async (prefix: string) => {
      await deps.control.pool.query(
        `INSERT INTO dbfleet.job_event_log (prefix, queue, job_id, tenant, payload_digest, status, attempt, recorded_ms)
         VALUES ($1, 'load-fixtures', 'j1', 'acme', 'sha256:00', 'completed', 1, 0)`,
        [prefix],
      );
      await deps.control.pool.query(
        `INSERT INTO dbfleet.audit_dead_letters (prefix, entry_id, fields, error_code)
         VALUES ($1, '1-0', $2, 'no_events_field')`,
        [prefix, [Buffer.from('x'), Buffer.from('y')]],
      );
    };
    const other = `${deps.prefix}-other`;
    await insert(deps.prefix);
    await insert(other);
    await deps.control.pool.query(`INSERT INTO dbfleet.audit_cursor (prefix, last_id) VALUES ($1, '1-0')`, [
      deps.prefix,
    ]);
    try {
      await deps.control.forgetPrefix(deps.prefix);
      const count = async (table: string, prefix: string) =>
        Number(
          (await deps.control.pool.query(`SELECT count(*) AS n FROM ${table} WHERE prefix = $1`, [prefix]))
            .rows[0].n,
        );
      expect(await count('dbfleet.job_events', deps.prefix)).toBe(0);
      expect(await count('dbfleet.audit_cursor', deps.prefix)).toBe(0);
      expect(await count('dbfleet.audit_dead_letters', deps.prefix)).toBe(0);
      expect(await count('dbfleet.job_events', other)).toBe(1);
      expect(await count('dbfleet.audit_dead_letters', other)).toBe(1);
    } finally {
      await deps.control.forgetPrefix(other);
    }
  });

  test('forgetTenant deletes that tenant’s registration only', async ({ deps }) => {
    const [mine, other] = [uniqueId('forget'), uniqueId('keep')];
    await deps.control.addTenant(mine);
    await deps.control.addTenant(other);
    try {
      await deps.control.forgetTenant(mine);
      expect(await deps.control.tenantExists(mine)).toBe(false);
      expect(await deps.control.tenantExists(other)).toBe(true);
    } finally {
      await deps.control.forgetTenant(other);
    }
  });
});
