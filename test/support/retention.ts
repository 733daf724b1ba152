/**
 * A table and a collection of the same events for retention tests: keys 1..n, a time each (old, young
 * or missing), a kind, and a payload. Which rows a policy must take is computed from the same rule.
 */
import { createHash } from 'node:crypto';
import type { TenantHandle } from './fixtures.ts';

export interface EventRow {
  id: number;
  at: Date | null;
  kind: string;
  payload: string;
}

const DAY = 86_400_000;

/** Deterministic: every fourth row young, every ninth without a time, kinds a/b/c in turn. */
export function events(n: number, now = Date.now()): EventRow[] {
  return Array.from({ length: n }, (_, i) => {
    const id = i + 1;
    const at = id % 9 === 0 ? null : new Date(now - (id % 4 === 0 ? 1 : 10 + (id % 50)) * DAY - id * 1000);
    return { id, at, kind: 'abc'[id % 3]!, payload: `event ${id} ${'x'.repeat(id % 40)}` };
  });
}

/** What a policy of `days` over kinds `kinds` must delete. */
export function expired(rows: EventRow[], days: number, kinds: string[], now = Date.now()): EventRow[] {
  return rows.filter((r) => r.at !== null && r.at.getTime() < now - days * DAY && kinds.includes(r.kind));
}

export async function createEvents(
  tenant: TenantHandle,
  store: 'postgres' | 'mongo',
  rows: EventRow[],
  name = 'events',
) {
  if (store === 'postgres') {
    await tenant.pg.withClient(async (c) => {
      await c.query(
        `CREATE TABLE ${name} (id bigint PRIMARY KEY, at timestamptz, kind text NOT NULL, payload text NOT NULL, amount numeric(20,2) NOT NULL DEFAULT 12345678901234567.25)`,
      );
      for (let i = 0; i < rows.length; i += 5_000) {
        const part = rows.slice(i, i + 5_000);
        await c.query(
          `INSERT INTO ${name} (id, at, kind, payload) SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::text[])`,
          [part.map((r) => r.id), part.map((r) => r.at), part.map((r) => r.kind), part.map((r) => r.payload)],
        );
      }
    });
  } else {
    await tenant.mongo.createCollection(name);
    const docs = rows.map((r) => ({ _id: r.id, at: r.at, kind: r.kind, payload: r.payload }));
    for (let i = 0; i < docs.length; i += 5_000)
      await tenant.mongo.collection<{ _id: number }>(name).insertMany(docs.slice(i, i + 5_000));
  }
}

/** Every row, by key, with a digest of its values. */
export async function digests(
  tenant: TenantHandle,
  store: 'postgres' | 'mongo',
  name = 'events',
): Promise<Map<number, string>> {
  const out = new Map<number, string>();
  const hash = (v: unknown) => createHash('sha256').update(JSON.stringify(v)).digest('hex');
  if (store === 'postgres') {
    const { rows } = await tenant.pg.withClient((c) =>
      c.query<{ id: string }>(`SELECT * FROM ${name} ORDER BY id`),
    );
    for (const r of rows) out.set(Number(r.id), hash(r));
  } else {
    for (const d of await tenant.mongo.collection(name).find().sort({ _id: 1 }).toArray())
      out.set(d._id as unknown as number, hash(d));
  }
  return out;
}

/** An index led by the time field, as a TTL index would be: MongoDB cleanup then walks it. */
export async function indexTime(tenant: TenantHandle, name = 'events') {
  await tenant.mongo.collection(name).createIndex({ at: 1 });
}
