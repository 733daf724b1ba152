/**
 * For subject-export tests: the demo tenant with three people in every mapped table and collection,
 * the one exported (ADA) holding a playlist whose id is beyond 2^53 (its tracks are reached through
 * it), and what reading an opened export back gives.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Long } from 'mongodb';
import type { FleetDeps } from '../../src/runtime/deps.ts';
import type { TenantHandle } from './fixtures.ts';

export const ADA = { id: '770001234', email: 'ada.export@example.test', name: 'Ada Exportwell' };
const OTHERS = [
  { id: '770001235', email: 'bob.other@example.test', name: 'Bob Otherson' },
  { id: '770001236', email: 'cy.third@example.test', name: 'Cy Thirdly' },
];
/** Ada's first playlist: exact only if nothing on the way parsed it into a double. */
export const BIG_PLAYLIST = '9007199254740993';
/** A listening event's counter a double cannot hold: must stay a $numberLong. */
export const BIG_COUNTER = '9007199254740995';

/** Every value of Ada's the export must not leave anywhere but in its bundle. */
export const ADA_VALUES = [ADA.id, ADA.email, ADA.name, '203.0.113.77', 'AdaBrowser/1.0'];

export async function fillPeople(t: TenantHandle): Promise<void> {
  await t.pg.withClient(async (c) => {
    for (const [i, p] of [ADA, ...OTHERS].entries())
      await c.query(
        `INSERT INTO users (id, email, display_name, country, birth_year, created_at) VALUES ($1, $2, $3, 'GB', $4, '2026-01-01T00:00:00Z')`,
        [p.id, p.email, p.name, 1980 + i],
      );
    await c.query(`INSERT INTO playlists (id, user_id, name, is_public, created_at) VALUES
      (${BIG_PLAYLIST}, ${ADA.id}, 'Ada road trip', true, '2026-02-01T00:00:00Z'),
      (5001, ${ADA.id}, 'Ada quiet', false, '2026-02-02T00:00:00Z'),
      (5002, ${OTHERS[0]!.id}, 'Bob mix', true, '2026-02-03T00:00:00Z'),
      (5003, ${OTHERS[1]!.id}, 'Cy mix', true, '2026-02-04T00:00:00Z')`);
    await c.query(`INSERT INTO playlist_tracks (playlist_id, position, track_id, added_at) VALUES
      (${BIG_PLAYLIST}, 1, 'track-a', '2026-03-01T00:00:00Z'),
      (${BIG_PLAYLIST}, 2, 'track-b', '2026-03-01T00:00:00Z'),
      (5001, 1, 'track-c', '2026-03-01T00:00:00Z'),
      (5002, 1, 'track-bob', '2026-03-01T00:00:00Z'),
      (5003, 1, 'track-cy', '2026-03-01T00:00:00Z')`);
    await c.query(`INSERT INTO consent (user_id, purpose, granted, updated_at) VALUES
      (${ADA.id}, 'ads', true, '2026-04-01T00:00:00Z'), (${ADA.id}, 'mail', false, '2026-04-01T00:00:00Z'),
      (${OTHERS[0]!.id}, 'ads', false, '2026-04-01T00:00:00Z')`);
  });
  const ada = Number(ADA.id);
  const [bob, cy] = OTHERS.map((p) => Number(p.id));
  await t.mongo.collection('sessions').insertMany([
    {
      _id: 'sess-ada-1' as never,
      userId: ada,
      device: 'Ada phone',
      expiresAt: new Date('2027-01-01T00:00:00Z'),
    },
    {
      _id: 'sess-ada-2' as never,
      userId: ada,
      device: 'Ada laptop',
      expiresAt: new Date('2027-01-01T00:00:00Z'),
    },
    {
      _id: 'sess-bob' as never,
      userId: bob,
      device: 'Bob phone',
      expiresAt: new Date('2027-01-01T00:00:00Z'),
    },
    // Ada's id as text: the map says userId holds a number, so the export (like erasure) does not take it.
    { _id: 'sess-text' as never, userId: ADA.id, device: 'text id' },
  ]);
  await t.mongo.collection('listening_events').insertMany([
    // Held as a 64-bit integer: a number filter still finds it.
    {
      _id: 'ev-ada-1' as never,
      userId: Long.fromString(ADA.id),
      trackId: 'track-a',
      counter: Long.fromString(BIG_COUNTER),
    },
    { _id: 'ev-ada-2' as never, userId: ada, trackId: 'track-b', playedAt: new Date('2026-05-01T10:00:00Z') },
    { _id: 'ev-ada-3' as never, userId: ada, trackId: 'track-c', ms: 1234.5 },
    { _id: 'ev-bob' as never, userId: bob, trackId: 'track-bob' },
    { _id: 'ev-cy' as never, userId: cy, trackId: 'track-cy' },
  ]);
  await t.mongo.collection('audit_log').insertMany([
    {
      _id: 'log-ada' as never,
      userId: ada,
      action: 'login',
      ip: '203.0.113.77',
      userAgent: 'AdaBrowser/1.0',
    },
    { _id: 'log-bob' as never, userId: bob, action: 'login', ip: '198.51.100.2', userAgent: 'BobBrowser' },
  ]);
}

/** What Ada's export holds, per location. */
export const ADA_COUNTS = {
  'postgres/users': 1,
  'postgres/playlists': 2,
  'postgres/playlist_tracks': 3,
  'postgres/consent': 2,
  'mongo/sessions': 2,
  'mongo/listening_events': 3,
  'mongo/audit_log': 1,
};

export interface OpenedExport {
  manifest: {
    format: string;
    exportId: string;
    tenant: string;
    createdAt: string;
    expiresAt: string;
    files: { path: string; store: string; name: string; records: number; bytes: number; sha256: string }[];
  };
  /** Each file's text, by path. */
  text: Record<string, string>;
  /** Each file parsed (bigints rounded: check `text` for exact digits). */
  json: Record<string, Record<string, unknown>[]>;
}

/** Reads an opened export's folder; fails if a file is not what the manifest says. */
export async function readOpened(dir: string): Promise<OpenedExport> {
  const manifest = JSON.parse(
    await readFile(path.join(dir, 'manifest.json'), 'utf8'),
  ) as OpenedExport['manifest'];
  const text: Record<string, string> = {};
  const json: Record<string, Record<string, unknown>[]> = {};
  for (const f of manifest.files) {
    const bytes = await readFile(path.join(dir, f.path));
    if (bytes.length !== f.bytes || createHash('sha256').update(bytes).digest('hex') !== f.sha256)
      throw new Error(`${f.path} does not match the manifest`);
    text[f.path] = bytes.toString('utf8');
    json[f.path] = JSON.parse(text[f.path]!) as Record<string, unknown>[];
  }
  return { manifest, text, json };
}

/** Deletes what a test's exports left in the S3 bucket (the local folder goes with the test's tmp). */
export async function forgetExports(deps: FleetDeps, tenant: string): Promise<void> {
  for await (const o of deps.objects.list(`exports/${tenant}/`)) await deps.objects.delete(o.key);
}
