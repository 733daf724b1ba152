/**
 * Reads a migrations folder: `<version>_<name>.sql` (sections `-- migrate:up` and `-- migrate:down`,
 * optional `-- migrate:no-transaction`) and `<version>_<name>.ts` (a default export made with
 * postgresMigration() or mongoMigration()). Mongo folders hold `.ts` files only.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type pg from 'pg';
import { PermanentError } from '../errors.ts';
import { splitStatements } from './sql-statements.ts';
import { compareVersions, type Migration, type MigrationModule, type MigrationStore } from './types.ts';

const FILE = /^(\d+)_([A-Za-z0-9_-]+)\.(sql|ts)$/;

const invalid = (file: string, why: string) => new PermanentError('invalid_migration', `${file}: ${why}`);

export function checksumOf(text: string): string {
  return createHash('sha256').update(text.replace(/\r\n/g, '\n')).digest('hex');
}

/** Parses a SQL migration's text into its up and down parts. */
export function parseSqlMigration(file: string, text: string) {
  const marker = /^--\s*migrate:(up|down|no-transaction)\s*$/gm;
  const parts: Partial<Record<'up' | 'down', string>> = {};
  let transaction = true;
  let current: 'up' | 'down' | undefined;
  let last = 0;
  const hasMarkers = /^--\s*migrate:up\s*$/m.test(text);
  if (!hasMarkers)
    return { up: text, down: undefined, transaction: !/^--\s*migrate:no-transaction/m.test(text) };
  for (const m of text.matchAll(marker)) {
    if (current) parts[current] = (parts[current] ?? '') + text.slice(last, m.index);
    if (m[1] === 'no-transaction') transaction = false;
    else {
      if (parts[m[1] as 'up' | 'down'] !== undefined)
        throw invalid(file, `two "-- migrate:${m[1]}" sections`);
      current = m[1] as 'up' | 'down';
      parts[current] = '';
    }
    last = m.index + m[0].length;
  }
  if (current) parts[current] = (parts[current] ?? '') + text.slice(last);
  const down = parts.down?.trim() ? parts.down : undefined;
  return { up: parts.up ?? '', down, transaction };
}

async function runSql(client: pg.PoolClient, sql: string, transaction: boolean) {
  // In a transaction one multi-statement query is fine; outside, each statement must go on its own.
  if (transaction) await client.query(sql);
  else for (const statement of splitStatements(sql)) await client.query(statement);
}

/** Loads and orders every migration in `folder`; refuses duplicate versions and unknown files. */
export async function loadMigrations<Ctx>(folder: string, store: MigrationStore): Promise<Migration<Ctx>[]> {
  let entries: string[];
  try {
    entries = await readdir(folder);
  } catch (err) {
    throw new PermanentError('invalid_migration', `migrations folder ${folder} cannot be read`, {
      cause: err,
    });
  }
  const migrations: Migration<Ctx>[] = [];
  const seen = new Map<string, string>();
  for (const file of entries.sort()) {
    if (file.startsWith('.') || file.endsWith('.md')) continue;
    const match = FILE.exec(file);
    if (!match) throw invalid(file, 'expected <version>_<name>.sql or .ts');
    const [, digits, name, ext] = match as unknown as [string, string, string, 'sql' | 'ts'];
    const version = BigInt(digits).toString();
    const clash = seen.get(version);
    if (clash) throw invalid(file, `version ${version} is also used by ${clash}`);
    seen.set(version, file);
    const full = path.join(folder, file);
    const text = await readFile(full, 'utf8');
    const base = { version, name, file, checksum: checksumOf(text) };
    if (ext === 'sql') {
      if (store === 'mongo') throw invalid(file, 'MongoDB migrations are .ts files');
      const sql = parseSqlMigration(file, text);
      const up = sql.up;
      const down = sql.down;
      type PgCtx = { client: pg.PoolClient };
      migrations.push({
        ...base,
        transaction: sql.transaction,
        up: (ctx) => runSql((ctx as PgCtx).client, up, sql.transaction),
        down: down === undefined ? undefined : (ctx) => runSql((ctx as PgCtx).client, down, sql.transaction),
      });
    } else {
      // The checksum in the URL makes an edited file load afresh in a long-running worker.
      const mod = (await import(`${pathToFileURL(full).href}?v=${base.checksum.slice(0, 16)}`)) as {
        default?: MigrationModule<Ctx>;
      };
      const m = mod.default;
      if (!m || typeof m.up !== 'function') throw invalid(file, 'no default export with an up() function');
      migrations.push({
        ...base,
        transaction: m.transaction ?? true,
        up: (ctx) => m.up(ctx),
        down: m.down ? (ctx) => m.down!(ctx) : undefined,
      });
    }
  }
  return migrations.sort((a, b) => compareVersions(a.version, b.version));
}
