/**
 * Retention on a PostgreSQL table: rows whose time column is older than the cutoff (and that match
 * the policy's `where`) are deleted in batches walked by primary key. Each batch is one short
 * transaction with a lock timeout, sized toward a target duration; it commits together with its
 * checkpoint row in the tenant's schema, so a crashed run resumes after the last batch that committed
 * and its counts add up exactly. A row a writer makes young again between the batch's reading and its
 * delete is kept: the delete checks the condition again on the row it locks.
 */
import type pg from 'pg';
import { PermanentError } from '../errors.ts';
import type { TenantPostgres } from '../stores/postgres.ts';
import { quoteIdent } from '../stores/identifiers.ts';
import { withPostgresTenantLock } from '../migrations/tenant-locks.ts';
import type { BatchArchive } from './archive.ts';
import { emptyOutcome, type PolicyOutcome, type RunScope } from './outcome.ts';
import { pace, rest } from './pace.ts';
import type { DataPolicy } from './policies.ts';

const CHECKPOINTS = '_dbfleet_cleanup';
/** Checkpoints of runs untouched this long are swept: no retry of them can come any more. */
const CHECKPOINT_DAYS = 45;
/** Batches in a row that may give up on a lock before the attempt fails (and is retried later). */
const MAX_CONTENDED = 8;
/** A batch that waited for a lock too long, or ran past its time altogether: tried again, smaller. */
const GAVE_UP = new Set(['55P03', '57014']);
/** A delete refused because another row still references this one (NO ACTION / RESTRICT). */
const REFERENCED = new Set(['23503', '23001']);

type PostgresPolicy = DataPolicy & { store: 'postgres' };

interface Column {
  name: string;
  /** As declared, with its length or precision: `character varying(5)`. */
  type: string;
  /** The type without them, schema-qualified: `pg_catalog.varchar`. A value cast to it is never cut. */
  base: string;
  /** pg_type.typcategory: B boolean, N numeric, A array, ... */
  category: string;
}

/** A policy checked against the tenant's catalog, ready to run. */
export interface ResolvedTable {
  policy: PostgresPolicy;
  table: string;
  keys: Column[];
  /** `t.<time> < <cutoff>` and the `where` conditions, parameters from $1 (the cutoff) on. */
  condition: string;
  params: unknown[];
  /** The select list that turns a deleted row into its archive line (exact numbers as text). */
  archiveColumns: string;
  timeColumn: string;
}

export async function resolveTable(pg: TenantPostgres, policy: PostgresPolicy): Promise<ResolvedTable> {
  return pg.withClient((client) => resolveWith(client, pg, policy));
}

/** On one connection: the catalog read, then each `where` value cast by the server. */
async function resolveWith(
  client: pg.PoolClient,
  store: TenantPostgres,
  policy: PostgresPolicy,
): Promise<ResolvedTable> {
  const where = `postgres ${policy.target} (policy ${policy.name})`;
  const { rows: columns } = await client.query<Column & { key: number | null }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
              quote_ident(tn.nspname) || '.' || quote_ident(ty.typname) AS base, ty.typcategory AS category,
              array_position(i.indkey::int2[], a.attnum) AS key
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         JOIN pg_type ty ON ty.oid = a.atttypid JOIN pg_namespace tn ON tn.oid = ty.typnamespace
         LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
        ORDER BY a.attnum`,
    [store.schema, policy.target],
  );
  if (columns.length === 0) throw mismatch(`${where}: no such table`);
  const keys = columns.filter((c) => c.key !== null).sort((a, b) => a.key! - b.key!);
  if (keys.length === 0) throw mismatch(`${where}: no primary key to walk the table by`);
  const byName = new Map(columns.map((c) => [c.name, c]));
  const time = byName.get(policy.timeField);
  if (!time) throw mismatch(`${where}: no column ${policy.timeField}`);
  const params: unknown[] = [null]; // $1: the cutoff, set per run
  const t = (c: string) => `t.${quoteIdent(c)}`;
  const conditions = [`${t(time.name)} < ${cutoffFor(time.type, where, policy.timeField)}`];
  const checks: { column: Column; values: unknown[] }[] = [];
  for (const [name, value] of Object.entries(policy.where ?? {})) {
    const column = byName.get(name);
    if (!column) throw mismatch(`${where}: no column ${name} (in where)`);
    // null in a list matches NULL, as MongoDB's $in does (= ANY never would).
    const values = Array.isArray(value) ? value : [value];
    const present = values.filter((v) => v !== null);
    const problem = whereProblem(column, present);
    if (problem) throw mismatch(`${where}: where ${name}: ${problem}`);
    const alternatives: string[] = [];
    if (present.length) {
      params.push(present);
      checks.push({ column, values: present });
      // Cast to the type without its length or precision: to varchar(5), 'abcdefgh' would be cut to
      // 'abcde' and take that row; to numeric(10,2), 1.005 would be 1.01.
      alternatives.push(`${t(name)} = ANY($${params.length}::${column.base}[])`);
    }
    if (present.length < values.length) alternatives.push(`${t(name)} IS NULL`);
    conditions.push(alternatives.length === 1 ? alternatives[0]! : `(${alternatives.join(' OR ')})`);
  }
  // Every value read as its column's type now, before anything of the run is deleted.
  for (const { column, values } of checks)
    await client.query(`SELECT $1::${column.base}[]`, [values]).catch((err: unknown) => {
      const code = (err as { code?: string }).code ?? 'error';
      throw mismatch(`${where}: where ${column.name}: a value is not a valid ${column.type} (${code})`);
    });
  const archiveColumns = columns
    .map((c) =>
      /^(bigint|numeric|money)\b/.test(c.type)
        ? `${t(c.name)}::text AS ${quoteIdent(c.name)}`
        : `${t(c.name)} AS ${quoteIdent(c.name)}`,
    )
    .join(', ');
  return {
    policy,
    table: store.table(policy.target),
    keys,
    condition: conditions.join(' AND '),
    params,
    archiveColumns,
    timeColumn: t(time.name),
  };
}

/**
 * What of a `where` the column's type rules out at once: a list to hold against an array column, a
 * true or false anywhere but a boolean column, a number anywhere but a numeric one (PostgreSQL would
 * compare them as text, where MongoDB never matches a string by a number).
 */
function whereProblem(column: Column, values: unknown[]): string | undefined {
  if (column.category === 'A') return `${column.type} is an array column; where takes scalar columns`;
  if (values.some((v) => typeof v === 'boolean') && column.category !== 'B')
    return `true or false against ${column.type}`;
  if (values.some((v) => typeof v === 'number') && column.category !== 'N')
    return `a number against ${column.type}`;
  return undefined;
}

function cutoffFor(type: string, where: string, column: string): string {
  // format_type spells a precision inside the name: `timestamp(3) with time zone`.
  if (/^timestamp(\(\d+\))? with time zone$/.test(type)) return '$1::timestamptz';
  // A time without zone is read as UTC, as the fleet writes them.
  if (/^timestamp(\(\d+\))? without time zone$/.test(type)) return "($1::timestamptz AT TIME ZONE 'UTC')";
  if (type === 'date') return "($1::timestamptz AT TIME ZONE 'UTC')::date";
  throw mismatch(`${where}: column ${column} is ${type}, not a timestamp or date`);
}

const mismatch = (message: string) => new PermanentError('policy_mismatch', message);

/** Dry run: how many rows would go, and the oldest and newest of their times. */
export async function surveyTable(pg: TenantPostgres, r: ResolvedTable, s: RunScope): Promise<PolicyOutcome> {
  const { rows } = await pg.withClient((client) =>
    client.query<{ n: string; oldest: string | null; newest: string | null }>(
      `SELECT count(*) AS n, to_json(min(${r.timeColumn}))#>>'{}' AS oldest, to_json(max(${r.timeColumn}))#>>'{}' AS newest
         FROM ${r.table} t WHERE ${r.condition}`,
      [s.cutoff.toISOString(), ...r.params.slice(1)],
    ),
  );
  return {
    ...emptyOutcome(r.policy.name, 'postgres', true),
    matched: Number(rows[0]!.n),
    oldest: rows[0]!.oldest,
    newest: rows[0]!.newest,
  };
}

interface Saved {
  after: string[] | null;
  matched: string;
  deleted: string;
  archived: string;
  skipped: string;
  batches: number;
  longest_ms: number;
  done: boolean;
}

/**
 * Runs under the tenant's PostgreSQL migration lock, shared (as backups and erasures): never during a
 * migration, which could change the table under the walk, nor a restore, which swaps the schema.
 */
export async function cleanTable(
  pg: TenantPostgres,
  r: ResolvedTable,
  s: RunScope,
  archive: BatchArchive | undefined,
  lockWaitMs: number,
): Promise<PolicyOutcome> {
  return pg.withClient((client) =>
    withPostgresTenantLock(client, pg.schema, 'shared', lockWaitMs, async () => {
      const saved = await loadCheckpoint(client, s.runId, r.policy.name);
      const outcome: PolicyOutcome = {
        ...emptyOutcome(r.policy.name, 'postgres', false),
        matched: Number(saved?.matched ?? 0),
        deleted: Number(saved?.deleted ?? 0),
        archived: Number(saved?.archived ?? 0),
        skipped: Number(saved?.skipped ?? 0),
        batches: saved?.batches ?? 0,
        longestBatchMs: saved?.longest_ms ?? 0,
      };
      if (saved?.done) return outcome;
      let after = saved?.after ?? null;
      const batchPace = pace(r.policy.batch);
      const values = [s.cutoff.toISOString(), ...r.params.slice(1)];
      const position = () => [after !== null, ...r.keys.map((_, i) => after?.[i] ?? null)];
      let contended = 0;
      // After a foreign key refused a batch: that batch again, row by row, leaving referenced rows.
      let oneByOne = false;
      for (;;) {
        s.throwIfInterrupted();
        const size = batchPace.size;
        const started = performance.now();
        let batch: Batch;
        try {
          // Read (and archived) before any lock is taken: a slow upload never holds a writer up.
          const candidates =
            archive || oneByOne
              ? await readCandidates(client, r, values, position(), size, !!archive)
              : undefined;
          if (archive && candidates!.keys.length > 0) await archive.write(outcome.batches, candidates!.lines);
          // lock_timeout bounds each wait; statement_timeout the batch (several waits in a row add up).
          await client.query(
            `BEGIN; SET LOCAL lock_timeout = ${batchPace.lockTimeoutMs}; SET LOCAL statement_timeout = ${batchPace.batchTimeoutMs}`,
          );
          batch = candidates
            ? await deleteCandidates(client, r, values, candidates.keys, size, oneByOne)
            : await deleteRange(client, r, values, position(), size);
          const ms = Math.round(performance.now() - started);
          const next: PolicyOutcome = {
            ...outcome,
            matched: outcome.matched + batch.matched,
            deleted: outcome.deleted + batch.deleted,
            archived: outcome.archived + (archive ? batch.matched : 0),
            skipped: (outcome.skipped ?? 0) + batch.skipped,
            batches: outcome.batches + 1,
            longestBatchMs: Math.max(outcome.longestBatchMs, ms),
          };
          const last = batch.last ?? after;
          await saveCheckpoint(client, s.runId, next, last, batch.end);
          await client.query('COMMIT');
          Object.assign(outcome, next);
          after = last;
          if (!oneByOne) batchPace.took(ms, batch.walked);
          oneByOne = false;
          contended = 0;
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          const code = (err as { code?: string }).code;
          if (code && REFERENCED.has(code) && !oneByOne) {
            oneByOne = true;
            continue;
          }
          if (!GAVE_UP.has(code ?? '') || ++contended >= MAX_CONTENDED) throw err;
          // A row of the batch is locked by a writer: try again, smaller, after a longer rest.
          batchPace.contended();
          s.log.debug({ policy: r.policy.name, size: batchPace.size }, 'cleanup batch gave up on a lock');
          await rest(batchPace.pauseMs * 2 ** contended, s.signal);
          continue;
        }
        await s.progress(outcome);
        if (batch.end) return outcome;
        await rest(batchPace.pauseMs, s.signal);
      }
    }),
  );
}

interface Batch {
  matched: number;
  deleted: number;
  /** Rows a foreign key still references: left where they are. */
  skipped: number;
  /** How far the batch reached: the walk's next position (null: it did not move). */
  last: string[] | null;
  /** What the pace counts: keys walked, or rows matched when the batch was cut by them. */
  walked: number;
  /** The walk's end: nothing past `last` is left to look at. */
  end: boolean;
}

/** The walk's next `size` matching rows, read without locks: keys as text, and archive lines. */
async function readCandidates(
  client: pg.PoolClient,
  r: ResolvedTable,
  values: unknown[],
  position: unknown[],
  size: number,
  archiving: boolean,
): Promise<{ keys: string[][]; lines: string[] }> {
  const { rows } = await client.query<{ key: string[]; line: string | null }>(
    `SELECT ARRAY[${r.keys.map((k) => `t.${quoteIdent(k.name)}::text`).join(', ')}] AS key,
            ${archiving ? `(SELECT row_to_json(x)::text FROM (SELECT ${r.archiveColumns}) x)` : 'NULL::text'} AS line
       FROM ${r.table} t WHERE ${walkCondition(r)} AND ${r.condition}
      ORDER BY ${r.keys.map((k) => `t.${quoteIdent(k.name)}`).join(', ')} LIMIT $${r.params.length + 2 + r.keys.length}`,
    [...values, ...position, size],
  );
  return { keys: rows.map((row) => row.key), lines: rows.map((row) => row.line!) };
}

/** Deletes the rows of these keys that still match: all at once, or one by one past foreign keys. */
async function deleteCandidates(
  client: pg.PoolClient,
  r: ResolvedTable,
  values: unknown[],
  keys: string[][],
  size: number,
  oneByOne: boolean,
): Promise<Batch> {
  const batch: Batch = {
    matched: keys.length,
    deleted: 0,
    skipped: 0,
    last: keys.at(-1) ?? null,
    walked: keys.length,
    end: keys.length < size,
  };
  if (keys.length === 0) return batch;
  const n = values.length;
  const names = r.keys.map((k) => quoteIdent(k.name));
  if (!oneByOne) {
    // Bounded by the keys' range (one range scan of the primary key), exactly those keys within it.
    const columns = r.keys.map((k, i) => `$${n + 1 + i}::${k.type}[]`).join(', ');
    const bound = (i: number) => r.keys.map((k, j) => `$${n + 1 + r.keys.length * (1 + i) + j}::${k.type}`);
    const range =
      names.length === 1
        ? `t.${names[0]} >= ${bound(0)[0]} AND t.${names[0]} <= ${bound(1)[0]}`
        : `(${names.map((k) => `t.${k}`).join(', ')}) >= (${bound(0).join(', ')}) AND (${names.map((k) => `t.${k}`).join(', ')}) <= (${bound(1).join(', ')})`;
    const { rowCount } = await client.query(
      `DELETE FROM ${r.table} t USING unnest(${columns}) AS b(${names.join(', ')})
        WHERE ${range} AND ${names.map((k) => `t.${k} = b.${k}`).join(' AND ')} AND ${r.condition}`,
      [...values, ...r.keys.map((_, i) => keys.map((key) => key[i])), ...keys[0]!, ...keys.at(-1)!],
    );
    batch.deleted = rowCount ?? 0;
    return batch;
  }
  const one = `DELETE FROM ${r.table} t WHERE ${names.map((k, i) => `t.${k} = $${n + 1 + i}::${r.keys[i]!.type}`).join(' AND ')} AND ${r.condition}`;
  for (const key of keys) {
    await client.query('SAVEPOINT row');
    try {
      batch.deleted += (await client.query(one, [...values, ...key])).rowCount ?? 0;
      await client.query('RELEASE SAVEPOINT row');
    } catch (err) {
      if (!REFERENCED.has((err as { code?: string }).code ?? '')) throw err;
      await client.query('ROLLBACK TO SAVEPOINT row');
      batch.skipped++;
    }
  }
  return batch;
}

/** Past the walk's position: parameters after the cutoff and `where` values. */
function walkCondition(r: ResolvedTable): string {
  const n = r.params.length;
  const keys = r.keys.map((k) => `t.${quoteIdent(k.name)}`);
  const position = r.keys.map((k, i) => `$${n + 2 + i}::${k.type}`);
  const walk =
    keys.length === 1 ? `${keys[0]} > ${position[0]}` : `(${keys.join(', ')}) > (${position.join(', ')})`;
  return `(NOT $${n + 1}::boolean OR ${walk})`;
}

/**
 * One batch: the rows of the next `size` keys past the walk's position that match, deleted (the
 * condition checked again on each row the delete locks). A batch is cut by keys walked, not rows
 * matched: its upper key is read from the primary key alone (an index-only scan), and the delete is
 * one range scan of the primary key, so each row of the range is read once. Cut by rows matched, each
 * batch read its range twice (finding its last match, then deleting): 37 ms for 20,000 rows in 2M,
 * against 22 ms. The last batch reaches the highest key the statement sees, no further: rows
 * inserted past it meanwhile wait for the next run.
 */
async function deleteRange(
  client: pg.PoolClient,
  r: ResolvedTable,
  values: unknown[],
  position: unknown[],
  size: number,
): Promise<Batch> {
  const keys = r.keys.map((k) => quoteIdent(k.name));
  const n = r.params.length + 1 + keys.length;
  const list = keys.map((k) => `t.${k}`).join(', ');
  const text = (from: string) => `(SELECT ARRAY[${keys.map((k) => `${k}::text`).join(', ')}] FROM ${from})`;
  const { rows } = await client.query<{ deleted: number; last: string[] | null; end: boolean }>(
    `WITH upper AS (
        SELECT ${list} FROM ${r.table} t WHERE ${walkCondition(r)}
         ORDER BY ${keys.join(', ')} OFFSET $${n + 1}::int - 1 LIMIT 1),
      top AS (
        SELECT ${list} FROM ${r.table} t ORDER BY ${keys.map((k) => `${k} DESC`).join(', ')} LIMIT 1),
      bound AS (
        SELECT * FROM upper UNION ALL SELECT * FROM top WHERE NOT EXISTS (SELECT FROM upper)),
      gone AS (
        DELETE FROM ${r.table} t WHERE ${walkCondition(r)} AND ${upTo(r, 'bound')} AND ${r.condition} RETURNING 1)
      SELECT (SELECT count(*) FROM gone)::int AS deleted, ${text('bound')} AS last,
             coalesce(${text('upper')} = ${text('top')}, true) AS end`,
    [...values, ...position, size],
  );
  const { deleted, last, end } = rows[0]!;
  return { matched: deleted, deleted, skipped: 0, last, walked: end ? 0 : size, end };
}

/**
 * Up to the key in the CTE `cte`, each key column as a scalar subquery: a row comparison with those
 * is an index condition, where one with a row subquery is not.
 */
function upTo(r: ResolvedTable, cte: string): string {
  const keys = r.keys.map((k) => quoteIdent(k.name));
  const bound = keys.map((k) => `(SELECT ${k} FROM ${cte})`);
  return keys.length === 1
    ? `t.${keys[0]} <= ${bound[0]}`
    : `(${keys.map((k) => `t.${k}`).join(', ')}) <= (${bound.join(', ')})`;
}

async function loadCheckpoint(
  client: pg.PoolClient,
  runId: string,
  policy: string,
): Promise<Saved | undefined> {
  await client.query(`CREATE TABLE IF NOT EXISTS ${CHECKPOINTS} (
      run_id text NOT NULL, policy text NOT NULL, after text[], matched bigint NOT NULL, deleted bigint NOT NULL,
      archived bigint NOT NULL, skipped bigint NOT NULL, batches integer NOT NULL, longest_ms integer NOT NULL, done boolean NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, policy))`);
  await client.query(
    `DELETE FROM ${CHECKPOINTS} WHERE updated_at < now() - make_interval(days => ${CHECKPOINT_DAYS})`,
  );
  const { rows } = await client.query<Saved>(
    `SELECT after, matched, deleted, archived, skipped, batches, longest_ms, done FROM ${CHECKPOINTS}
      WHERE run_id = $1 AND policy = $2`,
    [runId, policy],
  );
  return rows[0];
}

async function saveCheckpoint(
  client: pg.PoolClient,
  runId: string,
  o: PolicyOutcome,
  after: string[] | null,
  done: boolean,
): Promise<void> {
  await client.query(
    `INSERT INTO ${CHECKPOINTS} (run_id, policy, after, matched, deleted, archived, batches, longest_ms, done, skipped)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (run_id, policy) DO UPDATE SET after = $3, matched = $4, deleted = $5, archived = $6, skipped = $10,
       batches = $7, longest_ms = $8, done = $9, updated_at = now()`,
    [
      runId,
      o.name,
      after,
      o.matched,
      o.deleted,
      o.archived,
      o.batches,
      o.longestBatchMs,
      done,
      o.skipped ?? 0,
    ],
  );
}
