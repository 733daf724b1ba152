/**
 * The demo music-streaming app's schema: PostgreSQL tables in the tenant's schema and MongoDB
 * collections (with their indexes) in the tenant's database. Idempotent.
 */
import type { Db } from 'mongodb';
import type { TenantPostgres } from '../src/stores/postgres.ts';

export const mongoCollections = ['sessions', 'listening_events', 'audit_log'] as const;

const DDL = `
CREATE TABLE IF NOT EXISTS users (
  id            bigint PRIMARY KEY,
  email         text NOT NULL UNIQUE,
  display_name  text NOT NULL,
  country       text,
  birth_year    integer,
  created_at    timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS playlists (
  id          bigint PRIMARY KEY,
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name        text NOT NULL,
  is_public   boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS playlist_tracks (
  playlist_id  bigint NOT NULL REFERENCES playlists (id) ON DELETE CASCADE,
  position     integer NOT NULL,
  track_id     text NOT NULL,
  added_at     timestamptz NOT NULL,
  PRIMARY KEY (playlist_id, position)
);
CREATE TABLE IF NOT EXISTS consent (
  user_id     bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose     text NOT NULL,
  granted     boolean NOT NULL,
  updated_at  timestamptz NOT NULL,
  PRIMARY KEY (user_id, purpose)
);
`;

export async function createDemoSchema(pg: TenantPostgres, mongo: Db): Promise<void> {
  await pg.withClient(async (client) => {
    await client.query(`CREATE SCHEMA IF NOT EXISTS "${pg.schema}"`);
    await client.query(`SET search_path TO "${pg.schema}"`);
    await client.query(DDL);
  });
  const existing = new Set(
    (await mongo.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name),
  );
  for (const name of mongoCollections) if (!existing.has(name)) await mongo.createCollection(name);
  await mongo.collection('sessions').createIndex({ userId: 1 });
  await mongo.collection('sessions').createIndex({ expiresAt: 1 });
  await mongo.collection('listening_events').createIndex({ userId: 1, playedAt: 1 });
  await mongo.collection('audit_log').createIndex({ userId: 1 });
}
