/**
 * The demo deployment's config module. A real deployment writes its own, with the same shape.
 * Secrets never go here: a tenant on its own cluster names the environment variable with its URL.
 */
import path from 'node:path';
import { defineConfig } from './src/config/define.ts';
import { fixtures } from './demo/fixtures.ts';

export default defineConfig({
  fixtures,
  // Resolved against this file, so any working folder works.
  migrations: {
    postgres: path.join(import.meta.dirname, 'migrations/postgres'),
    mongo: path.join(import.meta.dirname, 'migrations/mongo'),
  },
  tenants: {
    // big_label: { postgresUrlEnv: 'BIG_LABEL_POSTGRES_URL', mongoUrlEnv: 'BIG_LABEL_MONGO_URL' },
  },
  // A listener is erased by user id: their account, playlists (and the playlists' tracks, reached
  // through them), consent and sessions go; listening history and the audit trail stay for the
  // catalogue's statistics, under a pseudonym.
  personalData: [
    { store: 'postgres', name: 'users', subjectField: 'id', action: 'delete' },
    { store: 'postgres', name: 'playlists', subjectField: 'user_id', action: 'delete' },
    {
      store: 'postgres',
      name: 'playlist_tracks',
      through: { location: 'playlists', field: 'playlist_id', key: 'id' },
      action: 'delete',
    },
    { store: 'postgres', name: 'consent', subjectField: 'user_id', action: 'delete' },
    { store: 'mongo', name: 'sessions', subjectField: 'userId', subjectType: 'number', action: 'delete' },
    {
      store: 'mongo',
      name: 'listening_events',
      subjectField: 'userId',
      subjectType: 'number',
      action: 'anonymise',
      anonymise: { userId: 'hash' },
    },
    {
      store: 'mongo',
      name: 'audit_log',
      subjectField: 'userId',
      subjectType: 'number',
      action: 'anonymise',
      anonymise: { userId: 'hash', ip: 'null', userAgent: 'null' },
    },
  ],
  // What cleanup jobs delete. Sessions go once expired, listening history after a year (in batches
  // sized toward 50 ms, with a pause between them), the audit trail of jobs after 400 days; nightly
  // backups thin out to 14 daily, 8 weekly, 12 monthly and 3 yearly, read in Paris time.
  retention: [
    {
      name: 'expired_sessions',
      store: 'mongo',
      target: 'sessions',
      timeField: 'expiresAt',
      olderThanDays: 0,
    },
    {
      name: 'old_events',
      store: 'mongo',
      target: 'listening_events',
      timeField: 'playedAt',
      olderThanDays: 365,
    },
    { name: 'job_audit', store: 'control', records: 'audit_events', olderThanDays: 400 },
    { name: 'expired_exports', store: 'exports' },
    {
      name: 'backups',
      store: 'backups',
      keep: { daily: 14, weekly: 8, monthly: 12, yearly: 3 },
      timeZone: 'Europe/Paris',
    },
  ],
});
