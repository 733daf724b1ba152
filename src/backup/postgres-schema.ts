/**
 * A tenant schema's structure as statements that recreate it under any schema name: tables (columns,
 * types, defaults, identity and generated columns), sequences with their current values, constraints
 * and indexes. Read from the catalogs with search_path set to the tenant's schema, where PostgreSQL
 * names the schema's own objects without their schema, so the statements run unchanged in another
 * (a restore into another tenant, or into a staging schema beside the live one). What this does not
 * cover yet (views, functions, triggers, types of the schema's own) is refused, not silently left out.
 */
import type pg from 'pg';
import { PermanentError } from '../errors.ts';
import { quoteCatalogName as name, quoteIdent } from '../stores/identifiers.ts';

export interface SequenceState {
  name: string;
  /** CREATE SEQUENCE, for sequences that are not a column's identity. */
  create: string | null;
  /** `setval` arguments: where the sequence stands. */
  lastValue: string;
  isCalled: boolean;
  /** `table.column` it belongs to (serial columns), or null. */
  ownedBy: string | null;
}

export interface PostgresSchemaScript {
  /** CREATE TABLE statements, without column defaults (a default may name a sequence made later). */
  tables: { name: string; create: string }[];
  /** ALTER TABLE ... ALTER COLUMN ... SET DEFAULT, once every table and sequence exists. */
  defaults: string[];
  sequences: SequenceState[];
  /** ALTER TABLE ... ADD CONSTRAINT: primary keys, unique, check and exclusion constraints. */
  constraints: string[];
  /** ALTER TABLE ... ADD CONSTRAINT ... FOREIGN KEY, once every key and index exists. */
  foreignKeys: string[];
  /** CREATE INDEX for indexes that back no constraint. */
  indexes: string[];
}

/** Fails on objects a backup would miss, naming their kinds and names (schema-level names, no data). */
async function refuseUncovered(client: pg.PoolClient, schema: string): Promise<void> {
  const { rows } = await client.query<{ kind: string; name: string }>(
    `SELECT 'view' AS kind, c.relname AS name FROM pg_class c
       WHERE c.relnamespace = $1::regnamespace AND c.relkind IN ('v', 'm', 'f', 'p')
     UNION ALL SELECT 'function', p.proname FROM pg_proc p WHERE p.pronamespace = $1::regnamespace
     UNION ALL SELECT 'type', t.typname FROM pg_type t
       WHERE t.typnamespace = $1::regnamespace AND t.typtype IN ('e', 'd', 'c', 'r', 'm')
         AND NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind <> 'c')
     UNION ALL SELECT 'trigger', tg.tgname FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
       WHERE c.relnamespace = $1::regnamespace AND NOT tg.tgisinternal
     UNION ALL SELECT 'rule', r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
       WHERE c.relnamespace = $1::regnamespace AND r.rulename <> '_RETURN'
     UNION ALL SELECT 'inheritance', c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_class p ON p.oid = i.inhparent
       WHERE c.relnamespace = $1::regnamespace OR p.relnamespace = $1::regnamespace
     UNION ALL SELECT 'row level security', c.relname FROM pg_class c
       WHERE c.relnamespace = $1::regnamespace
         AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_policy pol WHERE pol.polrelid = c.oid))
     UNION ALL SELECT 'foreign key to another schema', k.conname FROM pg_constraint k
       JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
       WHERE c.relnamespace = $1::regnamespace AND k.contype = 'f' AND r.relnamespace <> c.relnamespace
     ORDER BY 1, 2`,
    [schema],
  );
  if (rows.length > 0)
    throw new PermanentError(
      'unsupported_schema_object',
      `schema ${schema} holds what backups do not cover yet: ${rows.map((r) => `${r.kind} ${r.name}`).join(', ')}`,
    );
}

/**
 * Reads the structure of `schema` on `client`, inside the caller's transaction (the backup's
 * snapshot), for the tables `include` accepts (with their sequences, constraints and indexes). Sets
 * search_path to the schema for the rest of that transaction.
 */
export async function readPostgresSchema(
  client: pg.PoolClient,
  schema: string,
  include: (table: string) => boolean = () => true,
): Promise<PostgresSchemaScript> {
  await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
  await refuseUncovered(client, schema);
  const tables = await client.query<{ oid: number; name: string; unlogged: boolean }>(
    `SELECT c.oid, c.relname AS name, c.relpersistence = 'u' AS unlogged FROM pg_class c
     WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' ORDER BY c.relname`,
    [schema],
  );
  const sequences = await client.query<{
    name: string;
    identity: boolean;
    type: string;
    start: string;
    increment: string;
    min: string;
    max: string;
    cache: string;
    cycle: boolean;
    owned_by: string | null;
    owner_table: string | null;
    owner_column: string | null;
  }>(
    `SELECT s.relname AS name, d.deptype = 'i' AS identity, format_type(q.seqtypid, NULL) AS type,
            q.seqstart AS start, q.seqincrement AS increment, q.seqmin AS min, q.seqmax AS max,
            q.seqcache AS cache, q.seqcycle AS cycle,
            CASE WHEN d.deptype = 'a' THEN quote_ident(t.relname) || '.' || quote_ident(a.attname) END AS owned_by,
            t.relname AS owner_table, a.attname AS owner_column
     FROM pg_class s JOIN pg_sequence q ON q.seqrelid = s.oid
     LEFT JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
     LEFT JOIN pg_class t ON t.oid = d.refobjid
     LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
     WHERE s.relnamespace = $1::regnamespace AND s.relkind = 'S' ORDER BY s.relname`,
    [schema],
  );
  // An identity column is recreated with its own sequence's name and settings.
  const identityOf = new Map(
    sequences.rows
      .filter((q) => q.identity)
      .map((q) => [
        `${q.owner_table}.${q.owner_column}`,
        ` (SEQUENCE NAME ${name(q.name)} INCREMENT BY ${q.increment} MINVALUE ${q.min} MAXVALUE ${q.max} ` +
          `START WITH ${q.start} CACHE ${q.cache}${q.cycle ? ' CYCLE' : ' NO CYCLE'})`,
      ]),
  );
  const columns = await client.query<{
    table: string;
    name: string;
    type: string;
    notnull: boolean;
    def: string | null;
    identity: string;
    generated: string;
    collation: string | null;
  }>(
    `SELECT c.relname AS table, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
            a.attnotnull AS notnull, pg_get_expr(d.adbin, d.adrelid) AS def,
            a.attidentity AS identity, a.attgenerated AS generated,
            -- A collation other than the type's default, schema-qualified unless it is built in.
            CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN
              CASE WHEN co.collnamespace = 'pg_catalog'::regnamespace THEN quote_ident(co.collname)
                   ELSE quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END
            END AS collation
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
     JOIN pg_type ty ON ty.oid = a.atttypid
     LEFT JOIN pg_collation co ON co.oid = a.attcollation
     LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY c.relname, a.attnum`,
    [schema],
  );
  const byTable = new Map<string, string[]>();
  const defaults: string[] = [];
  for (const col of columns.rows) {
    let line = `${name(col.name)} ${col.type}`;
    if (col.collation) line += ` COLLATE ${col.collation}`;
    if (col.generated === 's') line += ` GENERATED ALWAYS AS (${col.def}) STORED`;
    else if (col.identity)
      line += ` GENERATED ${col.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${identityOf.get(`${col.table}.${col.name}`) ?? ''}`;
    else if (col.def !== null && include(col.table))
      defaults.push(`ALTER TABLE ${name(col.table)} ALTER COLUMN ${name(col.name)} SET DEFAULT ${col.def}`);
    if (col.notnull && !col.identity) line += ' NOT NULL';
    const list = byTable.get(col.table) ?? [];
    list.push(line);
    byTable.set(col.table, list);
  }
  const states: SequenceState[] = [];
  for (const s of sequences.rows) {
    if (s.owner_table !== null && !include(s.owner_table)) continue;
    const { rows } = await client.query<{ last_value: string; is_called: boolean }>(
      `SELECT last_value::text, is_called FROM ${quoteIdent(schema)}.${name(s.name)}`,
    );
    states.push({
      name: s.name,
      create: s.identity
        ? null
        : `CREATE SEQUENCE ${name(s.name)} AS ${s.type} INCREMENT BY ${s.increment} MINVALUE ${s.min} ` +
          `MAXVALUE ${s.max} START WITH ${s.start} CACHE ${s.cache}${s.cycle ? ' CYCLE' : ''}`,
      lastValue: rows[0]!.last_value,
      isCalled: rows[0]!.is_called,
      ownedBy: s.owned_by,
    });
  }
  const constraints = await client.query<{ table: string; name: string; def: string; fk: boolean }>(
    `SELECT c.relname AS table, k.conname AS name, pg_get_constraintdef(k.oid) AS def, k.contype = 'f' AS fk
     FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
     WHERE c.relnamespace = $1::regnamespace AND k.contype IN ('p', 'u', 'c', 'f', 'x')
     ORDER BY k.contype = 'f', c.relname, k.conname`,
    [schema],
  );
  const indexes = await client.query<{ table: string; def: string }>(
    `SELECT t.relname AS table, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i
     JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid
     WHERE c.relnamespace = $1::regnamespace
       AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
     ORDER BY c.relname`,
    [schema],
  );
  // pg_get_indexdef qualifies the table whatever the search_path: drop this schema's name.
  const qualified = ` ON ${quoteIdent(schema)}.`;
  const plainQualified = ` ON ${schema}.`;
  return {
    tables: tables.rows
      .filter((t) => include(t.name))
      .map((t) => ({
        name: t.name,
        create: `CREATE ${t.unlogged ? 'UNLOGGED ' : ''}TABLE ${name(t.name)} (\n  ${(byTable.get(t.name) ?? []).join(',\n  ')}\n)`,
      })),
    defaults,
    sequences: states,
    constraints: constraints.rows
      .filter((k) => include(k.table) && !k.fk)
      .map((k) => `ALTER TABLE ${name(k.table)} ADD CONSTRAINT ${name(k.name)} ${k.def}`),
    foreignKeys: constraints.rows
      .filter((k) => include(k.table) && k.fk)
      .map((k) => `ALTER TABLE ${name(k.table)} ADD CONSTRAINT ${name(k.name)} ${k.def}`),
    indexes: indexes.rows
      .filter((i) => include(i.table))
      .map((i) => i.def.replace(qualified, ' ON ').replace(plainQualified, ' ON ')),
  };
}

/**
 * Creates the tables and sequences of `script` in `schema` (which exists, empty), inside the caller's
 * transaction. Constraints and indexes come after the data (applyPostgresConstraints): loading into
 * bare tables is faster, and rows are checked once, when the constraints are added.
 */
export async function createPostgresTables(
  client: pg.PoolClient,
  schema: string,
  script: PostgresSchemaScript,
): Promise<void> {
  await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
  for (const s of script.sequences) if (s.create) await client.query(s.create);
  for (const t of script.tables) await client.query(t.create);
  for (const d of script.defaults) await client.query(d);
}

/**
 * What comes after the data and may run side by side, each statement on its own (two on one table
 * wait for each other's lock, never deadlock: each locks one table): keys, checks, indexes.
 */
export function keysAndIndexes(script: PostgresSchemaScript): string[] {
  return [...script.constraints, ...script.indexes];
}

/** Runs one statement of keysAndIndexes in `schema`, inside the caller's transaction. */
export async function applyInSchema(client: pg.PoolClient, schema: string, statement: string): Promise<void> {
  await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
  await client.query(statement);
}

/** Foreign keys (after every key and index), then every sequence put where it stood. */
export async function applyForeignKeysAndSequences(
  client: pg.PoolClient,
  schema: string,
  script: PostgresSchemaScript,
): Promise<void> {
  await client.query(`SET LOCAL search_path TO ${quoteIdent(schema)}`);
  for (const f of script.foreignKeys) await client.query(f);
  for (const s of script.sequences) {
    if (s.ownedBy && s.create) await client.query(`ALTER SEQUENCE ${name(s.name)} OWNED BY ${s.ownedBy}`);
    await client.query('SELECT setval($1::regclass, $2::bigint, $3)', [
      `${quoteIdent(schema)}.${name(s.name)}`,
      s.lastValue,
      s.isCalled,
    ]);
  }
}

/** Everything after the data on one connection: keys, checks, indexes, foreign keys, sequences. */
export async function applyPostgresConstraints(
  client: pg.PoolClient,
  schema: string,
  script: PostgresSchemaScript,
): Promise<void> {
  for (const statement of keysAndIndexes(script)) await applyInSchema(client, schema, statement);
  await applyForeignKeysAndSequences(client, schema, script);
}
