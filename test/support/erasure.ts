/**
 * For erasure tests: the demo tables and collections filled with a known set of listeners, and a
 * snapshot of every row and document by key, so a test can say exactly what an erasure changed.
 */
import { Int32, Long, type Document } from 'mongodb';
import type { Result } from '../../queues/index.ts';
import type { FleetClient } from '../../src/client/client.ts';
import type { TenantHandle } from './fixtures.ts';

export const email = (i: number) => `listener${i}@example.test`;
export const displayName = (i: number) => `Listener Name ${i}`;

/**
 * Listeners 1..n (ids offset by `base`, so a subject's id is distinctive enough to search for): two
 * playlists each with three tracks, two consents, two sessions, five listening events (the user id
 * held as Int32, Long or double, as drivers write it) and an audit entry with an IP.
 */
export async function fillDemo(t: TenantHandle, n = 30, base = 7_340_000): Promise<number[]> {
  const ids = Array.from({ length: n }, (_, i) => base + i + 1);
  await t.pg.withClient(async (c) => {
    for (const sql of [
      `INSERT INTO users SELECT id, 'listener' || id || '@example.test', 'Listener Name ' || id, 'DE', 1990,
         timestamptz '2026-01-01 00:00:00+00' FROM unnest($1::bigint[]) id`,
      `INSERT INTO playlists SELECT id * 10 + k, id, 'Mix ' || k, k = 1, timestamptz '2026-02-01 00:00:00+00'
         FROM unnest($1::bigint[]) id, generate_series(1, 2) k`,
      `INSERT INTO playlist_tracks SELECT id * 10 + k, p, 'track-' || p, timestamptz '2026-03-01 00:00:00+00'
         FROM unnest($1::bigint[]) id, generate_series(1, 2) k, generate_series(1, 3) p`,
      `INSERT INTO consent SELECT id, purpose, true, timestamptz '2026-04-01 00:00:00+00'
         FROM unnest($1::bigint[]) id, unnest(ARRAY['ads', 'mail']) purpose`,
    ])
      await c.query(sql, [ids]);
  });
  await t.mongo
    .collection('sessions')
    .insertMany(
      ids.flatMap((id) =>
        [1, 2].map((k) => ({ _id: `s-${id}-${k}`, userId: id, device: 'web' })),
      ) as Document[],
    );
  const asNumber = [(id: number) => new Int32(id), (id: number) => Long.fromNumber(id), (id: number) => id];
  await t.mongo.collection('listening_events').insertMany(
    ids.flatMap((id) =>
      [1, 2, 3, 4, 5].map((k) => ({
        _id: `e-${id}-${k}`,
        userId: asNumber[k % 3]!(id),
        trackId: `trk${k}`,
        msPlayed: 1000 * k,
      })),
    ) as Document[],
  );
  await t.mongo.collection('audit_log').insertMany(
    ids.map((id) => ({
      _id: `a-${id}`,
      userId: id,
      action: 'login',
      ip: `10.1.${id % 250}.7`,
      userAgent: `Agent for ${displayName(id)}`,
    })) as Document[],
  );
  return ids;
}

export type Snapshot = Record<string, Map<string, Record<string, unknown>>>;

const TABLES: Record<string, string> = {
  users: 'id::text',
  playlists: 'id::text',
  playlist_tracks: "playlist_id || '/' || position",
  consent: "user_id || '/' || purpose",
};

/** Every demo row and document, by table or collection and key. Numbers compared as numbers. */
export async function snapshot(t: TenantHandle): Promise<Snapshot> {
  const out: Snapshot = {};
  await t.pg.withClient(async (c) => {
    for (const [table, key] of Object.entries(TABLES)) {
      const { rows } = await c.query<{ k: string; row: Record<string, unknown> }>(
        `SELECT ${key} AS k, to_jsonb(x) AS row FROM ${table} x`,
      );
      out[`postgres:${table}`] = new Map(rows.map((r) => [r.k, r.row]));
    }
  });
  for (const name of ['sessions', 'listening_events', 'audit_log']) {
    const docs = await t.mongo.collection(name).find({}).toArray();
    out[`mongo:${name}`] = new Map(
      docs.map((d) => [
        String(d._id),
        Object.fromEntries(Object.entries(d).map(([k, v]) => [k, normalise(v)])),
      ]),
    );
  }
  return out;
}

function normalise(v: unknown): unknown {
  if (v instanceof Long || v instanceof Int32) return Number(v);
  return v;
}

/** Enqueues an erase of `subjectId` and waits for its result (or its failure). */
export async function erased(
  client: FleetClient,
  tenant: string,
  subjectId: string,
  o: { dryRun?: boolean } = {},
): Promise<Result<'erase'>> {
  const job = await client.enqueue('erase', { tenant, subject: { id: subjectId }, ...o });
  return job.waitForResult({ timeoutMs: 60_000 });
}
