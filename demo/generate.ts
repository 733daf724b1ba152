/**
 * Deterministic synthetic data for the demo app: the same seed and scale always give the same bytes.
 * Streams NDJSON (or CSV for users) so that 10M rows take no more memory than ten.
 */
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import type { Writable } from 'node:stream';

/** mulberry32: small, fast, and good enough for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COUNTRIES = ['DE', 'FR', 'GB', 'US', 'BR', 'JP', 'IN', 'NG', 'SE', 'ES'];
const DEVICES = ['ios', 'android', 'web', 'desktop', 'tv'];
const EPOCH = Date.UTC(2024, 0, 1);
const YEAR_MS = 365 * 24 * 3600 * 1000;

export type Dataset = 'users' | 'playlists' | 'listening_events' | 'sessions';

export interface GenerateOptions {
  dataset: Dataset;
  seed: number;
  /** Number of rows. */
  scale: number;
  /** Fraction of rows made invalid on purpose (0..1), to exercise rejection reporting. */
  badRate?: number;
  format?: 'ndjson' | 'csv';
}

export function* generateRows(o: GenerateOptions): Generator<Record<string, unknown>> {
  const random = rng(o.seed * 7919 + o.dataset.length);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
  const users = Math.max(1, o.dataset === 'users' ? o.scale : Math.ceil(o.scale / 10));
  for (let i = 1; i <= o.scale; i++) {
    const at = new Date(EPOCH + Math.floor(random() * YEAR_MS)).toISOString();
    let row: Record<string, unknown>;
    switch (o.dataset) {
      case 'users':
        row = {
          id: i,
          email: `user${i}@example.test`,
          display_name: `Listener ${i}`,
          country: pick(COUNTRIES),
          birth_year: 1950 + Math.floor(random() * 60),
          created_at: at,
        };
        break;
      case 'playlists':
        row = {
          id: i,
          user_id: 1 + Math.floor(random() * users),
          name: `Mix ${i}`,
          is_public: random() < 0.3,
          created_at: at,
        };
        break;
      case 'listening_events':
        row = {
          _id: `ev${i}`,
          userId: 1 + Math.floor(random() * users),
          trackId: `trk${Math.floor(random() * 50_000)}`,
          playedAt: at,
          msPlayed: Math.floor(random() * 300_000),
          device: pick(DEVICES),
        };
        break;
      case 'sessions':
        row = {
          _id: `s${i}`,
          userId: 1 + Math.floor(random() * users),
          device: pick(DEVICES),
          createdAt: at,
          expiresAt: new Date(Date.parse(at) + 30 * 24 * 3600 * 1000).toISOString(),
        };
        break;
    }
    // Deterministic bad rows: every 1/badRate-th row loses a required field or gets a wrong type.
    const every = o.badRate ? Math.round(1 / o.badRate) : 0;
    if (every && i % every === 0) row = spoil(row, i / every);
    yield row;
  }
}

/** The k-th bad row: odd ones get a malformed value, even ones lose it. */
function spoil(row: Record<string, unknown>, k: number): Record<string, unknown> {
  const copy = { ...row };
  if ('email' in copy) copy.email = k % 2 ? 'not-an-email' : undefined;
  else if ('msPlayed' in copy) copy.msPlayed = k % 2 ? -1 : 'long';
  else if ('userId' in copy) copy.userId = 'nobody';
  else copy.name = '';
  return copy;
}

function csvCell(v: unknown): string {
  if (v === null || v === undefined) return '';
  const s = String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Writes rows to `out` honouring backpressure; returns the number written. */
export async function writeRows(out: Writable, o: GenerateOptions): Promise<number> {
  let n = 0;
  let header: string[] | undefined;
  let chunk = '';
  for (const row of generateRows(o)) {
    if (o.format === 'csv') {
      header ??= Object.keys(row);
      if (n === 0) chunk += header.join(',') + '\n';
      chunk += header.map((k) => csvCell(row[k])).join(',') + '\n';
    } else {
      chunk += JSON.stringify(row) + '\n';
    }
    n++;
    if (chunk.length > 1 << 16) {
      if (!out.write(chunk)) await once(out, 'drain');
      chunk = '';
    }
  }
  if (chunk) out.write(chunk);
  return n;
}

export async function generateFile(path: string, o: GenerateOptions): Promise<number> {
  const out = createWriteStream(path);
  const n = await writeRows(out, o);
  out.end();
  await once(out, 'finish');
  return n;
}
