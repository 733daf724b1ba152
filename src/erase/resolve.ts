/**
 * The personal-data map against one tenant's real schema: every table, column and collection it
 * names must exist (strict, before an erase or export changes or reads anything), the order of work
 * follows the references (a location reached through another, and a table a foreign key ties to a
 * table being deleted from, come first), and each location gets the selector that finds the
 * subject's rows in it. A restore resolves leniently: a table or column an older backup does not
 * have cannot hold anyone's data, so it is skipped and named.
 */
import type { Db, Document, Filter } from 'mongodb';
import { Long, ObjectId } from 'mongodb';
import type pg from 'pg';
import { PermanentError } from '../errors.ts';
import { quoteIdent } from '../stores/identifiers.ts';
import {
  anonymisedValue,
  isSubjectUnique,
  pgKind,
  strategyFits,
  type PseudonymSource,
  type ValueKind,
} from './anonymise.ts';
import {
  locationId,
  type AnonymiseStrategy,
  type MongoSubjectType,
  type PersonalDataLocation,
} from './map.ts';

/** Where a map is applied: a tenant's live data, or a restore's staged copy of it. */
export interface MapTarget {
  /** A client of the tenant's PostgreSQL server. */
  pg: pg.ClientBase;
  schema: string;
  mongo: Db;
  /** The collection that holds a mapped collection's data (a restore stages under other names). */
  collection?: (name: string) => string;
}

export interface ResolvedLocation {
  id: string;
  store: 'postgres' | 'mongo';
  name: string;
  /** The table or collection acted on. */
  physical: string;
  action: 'delete' | 'anonymise';
  subjectField?: string;
  /** PostgreSQL: the subject column's type; MongoDB: how the field holds the id. */
  subjectType: string;
  mongoTypes: MongoSubjectType[];
  through?: { location: string; field: string; key: string };
  anonymise: { field: string; strategy: AnonymiseStrategy; kind: ValueKind; type: string }[];
  /**
   * Whether the subject (or path) field leads an index (without one, every erase scans the table).
   * Looked up only when asked (check-map): a job does not need it.
   */
  indexed?: boolean;
}

export interface ResolvedMap {
  /** In order of work. */
  postgres: ResolvedLocation[];
  mongo: ResolvedLocation[];
  /** Lenient resolution: the locations (and fields) left out, and why. */
  skipped: string[];
}

/** A map that does not fit the tenant's schema: names every mismatch, changes nothing. */
export class MapMismatchError extends PermanentError {
  readonly problems: readonly string[];
  constructor(tenant: string, problems: string[]) {
    super('map_mismatch', `the personal-data map does not fit tenant ${tenant}: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

export async function resolveMap(
  map: readonly PersonalDataLocation[],
  target: MapTarget,
  options: { tenant: string; lenient?: boolean; indexes?: boolean },
): Promise<ResolvedMap> {
  const problems: string[] = [];
  const skipped: string[] = [];
  const miss = (what: string) => (options.lenient ? skipped : problems).push(what);
  const pgLocs = map.filter((l) => l.store === 'postgres');
  const mongoLocs = map.filter((l) => l.store === 'mongo');

  const columns = new Map<string, Map<string, Column>>();
  const indexedCols = new Set<string>();
  const fks: ForeignKey[] = [];
  if (pgLocs.length) {
    const names = pgLocs.map((l) => l.name);
    const { rows } = await target.pg.query<{ table: string; column: string } & Column>(
      `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
              format_type(a.atttypid, NULL) AS base, a.attnotnull AS "notNull"
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2)`,
      [target.schema, names],
    );
    for (const r of rows) {
      if (!columns.has(r.table)) columns.set(r.table, new Map());
      // Without its length or precision (a cast to varchar(12) would cut the id and match another).
      const base = r.base === 'character' ? 'bpchar' : r.base;
      columns.get(r.table)!.set(r.column, { type: r.type, base, notNull: r.notNull });
    }
    if (options.indexes) {
      const idx = await target.pg.query<{ table: string; column: string }>(
        `SELECT c.relname AS table, a.attname AS column
         FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
         WHERE n.nspname = $1 AND c.relname = ANY($2)`,
        [target.schema, names],
      );
      for (const r of idx.rows) indexedCols.add(`${r.table}.${r.column}`);
    }
    // A partition's copy of its parent's foreign key (conparentid <> 0) is the parent's.
    const fk = await target.pg.query<ForeignKey>(
      `SELECT ch.relname AS child, pa.relname AS parent, con.confdeltype AS "onDelete", con.conname AS name,
              (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.conkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS columns,
              (SELECT array_agg(a.attname::text ORDER BY k.i) FROM unnest(con.confkey) WITH ORDINALITY k(n, i)
                 JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) AS "refColumns"
       FROM pg_constraint con JOIN pg_class ch ON ch.oid = con.conrelid JOIN pg_class pa ON pa.oid = con.confrelid
       JOIN pg_namespace n ON n.oid = pa.relnamespace
       WHERE con.contype = 'f' AND con.conparentid = 0 AND n.nspname = $1 AND pa.relname = ANY($2)
         AND ch.relnamespace = pa.relnamespace`,
      [target.schema, names],
    );
    fks.push(...fk.rows);
  }
  const collections = new Set(
    mongoLocs.length
      ? (await target.mongo.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name)
      : [],
  );

  const resolved = new Map<string, ResolvedLocation>();
  for (const l of map) {
    const where = `${l.store} ${l.name}`;
    const physical = l.store === 'mongo' ? (target.collection?.(l.name) ?? l.name) : l.name;
    const r: ResolvedLocation = {
      id: locationId(l),
      store: l.store,
      name: l.name,
      physical,
      action: l.action,
      subjectField: l.subjectField,
      subjectType: 'string',
      mongoTypes: Array.isArray(l.subjectType) ? l.subjectType : [l.subjectType ?? 'string'],
      through: l.through,
      anonymise: [],
    };
    const ref = l.subjectField ?? l.through!.field;
    if (l.store === 'postgres') {
      const cols = columns.get(l.name);
      if (!cols) {
        miss(`${where}: no such table in schema ${target.schema}`);
        continue;
      }
      if (!cols.has(ref)) {
        miss(`${where}: no column ${ref}`);
        continue;
      }
      const subject = cols.get(ref)!;
      r.subjectType = subject.base;
      if (l.subjectField && !SUBJECT_TYPES.test(subject.base))
        problems.push(
          `${where}.${ref} (${subject.type}): a subject column must be text, an integer, numeric or uuid`,
        );
      if (options.indexes) r.indexed = indexedCols.has(`${l.name}.${ref}`);
      for (const [field, strategy] of Object.entries(l.anonymise ?? {})) {
        const col = cols.get(field);
        if (!col) {
          miss(`${where}: no column ${field} (to anonymise)`);
          continue;
        }
        const kind = pgKind(col.type);
        const unfit = strategyFits(strategy, kind) ?? fixedFits(strategy, kind, col);
        if (unfit) problems.push(`${where}.${field} (${col.type}): ${unfit}`);
        r.anonymise.push({ field, strategy, kind, type: col.type });
      }
    } else {
      if (!collections.has(physical)) {
        miss(`${where}: no such collection`);
        continue;
      }
      if (options.indexes) {
        const indexes = await target.mongo.collection(physical).listIndexes().toArray();
        r.indexed = ref === '_id' || indexes.some((i) => Object.keys(i.key as Document)[0] === ref);
      }
      for (const [field, strategy] of Object.entries(l.anonymise ?? {})) {
        const kind: ValueKind = field === l.subjectField && r.mongoTypes[0] === 'number' ? 'number' : 'text';
        r.anonymise.push({ field, strategy, kind, type: kind });
      }
    }
    if (l.action === 'anonymise' && r.anonymise.length === 0) {
      skipped.push(`${where}: none of the fields to anonymise exist`);
      continue;
    }
    resolved.set(r.id, r);
  }
  // A path's parent must have resolved, and its key must exist there.
  for (const r of [...resolved.values()]) {
    if (!r.through) continue;
    for (let at: ResolvedLocation | undefined = r; at?.through;) {
      const parent = resolved.get(locationId({ store: at.store, name: at.through.location }));
      if (!parent) {
        resolved.delete(r.id);
        miss(`${r.store} ${r.name}: reached through ${at.through.location}, which is not there`);
        break;
      }
      if (parent.store === 'postgres' && !columns.get(parent.name)?.has(at.through.key)) {
        resolved.delete(r.id);
        miss(`${r.store} ${r.name}: the path's key ${at.through.location}.${at.through.key} does not exist`);
        break;
      }
      at = parent.through ? parent : undefined;
    }
  }
  problems.push(...foreignKeyProblems(pgLocs, fks, columns));
  if (problems.length) throw new MapMismatchError(options.tenant, problems);
  const order = (store: 'postgres' | 'mongo') =>
    workOrder(
      [...resolved.values()].filter((r) => r.store === store),
      store === 'postgres' ? fks : [],
    );
  return { postgres: order('postgres'), mongo: order('mongo'), skipped };
}

/**
 * Foreign keys into a table the erase deletes from, that would fail the erase half-way or delete
 * what the map keeps; said before anything changes:
 * - a table outside the map whose key forbids the delete (NO ACTION / RESTRICT);
 * - a mapped table whose key is not how the map reaches the subject through that table (another
 *   person's row referring to the subject's: `follows.followee_id`, `users.invited_by`), or one the
 *   map anonymises without clearing the key, when the key forbids the delete or cascades it.
 */
function foreignKeyProblems(
  locs: readonly PersonalDataLocation[],
  fks: readonly ForeignKey[],
  columns: ReadonlyMap<string, ReadonlyMap<string, Column>>,
): string[] {
  const problems: string[] = [];
  const byName = new Map(locs.map((l) => [l.name, l]));
  for (const f of fks) {
    const parent = byName.get(f.parent);
    if (parent?.action !== 'delete') continue;
    const blocks = f.onDelete === 'a' || f.onDelete === 'r';
    const cascades = f.onDelete === 'c';
    const child = byName.get(f.child);
    const fkName = `${f.child}.${f.columns.join(',')} (${f.name})`;
    if (!child) {
      if (blocks && columns.size > 0)
        problems.push(
          `table ${f.child} refers to ${f.parent} (${f.name}) and is not in the map: deleting a subject's ${f.parent} rows would fail`,
        );
      continue;
    }
    const single = f.columns.length === 1 ? f.columns[0]! : undefined;
    // The same subject on both ends: the child's subject column is the key, and the parent finds
    // the subject by the referenced column; or the child is reached through the parent by it.
    const samePath =
      single !== undefined &&
      f.child !== f.parent &&
      ((child.subjectField === single && parent.subjectField === f.refColumns[0]) ||
        (child.through?.location === f.parent &&
          child.through.field === single &&
          child.through.key === f.refColumns[0]));
    const cleared = single !== undefined && child.anonymise?.[single] === 'null';
    if (child.action === 'anonymise' && !cleared && (blocks || cascades))
      problems.push(
        `${fkName} refers to ${f.parent}, which is deleted, but ${f.child} is anonymised: ` +
          (cascades ? 'the delete would cascade to the rows kept' : 'the delete would fail') +
          ` (anonymise ${single ?? 'the key'} to null, or delete ${f.child})`,
      );
    else if (child.action === 'delete' && !samePath && (blocks || cascades))
      problems.push(
        `${fkName} refers to ${f.parent} other than by the subject: other people's ${f.child} rows ` +
          (cascades ? 'would be deleted with the subject' : 'would block the delete'),
      );
  }
  return problems;
}

/**
 * Children first: a location reached through another comes before it, and a table whose foreign
 * key points at a table being deleted from comes before that table. Map order otherwise.
 */
function workOrder(
  locs: ResolvedLocation[],
  fks: readonly { child: string; parent: string }[],
): ResolvedLocation[] {
  const byName = new Map(locs.map((l) => [l.name, l]));
  const before = new Map<string, Set<string>>(locs.map((l) => [l.name, new Set<string>()]));
  for (const l of locs)
    if (l.through && byName.has(l.through.location)) before.get(l.through.location)!.add(l.name);
  for (const f of fks)
    if (f.child !== f.parent && byName.has(f.child) && byName.get(f.parent)?.action === 'delete')
      before.get(f.parent)!.add(f.child);
  const out: ResolvedLocation[] = [];
  const placed = new Set<string>();
  while (out.length < locs.length) {
    const next =
      locs.find((l) => !placed.has(l.name) && [...before.get(l.name)!].every((c) => placed.has(c))) ??
      locs.find((l) => !placed.has(l.name))!; // a cycle of foreign keys: map order
    placed.add(next.name);
    out.push(next);
  }
  return out;
}

interface Column {
  /** As declared, for the values written (`character varying(80)`). */
  type: string;
  /** Without length or precision, for casting the subject id (`character varying`, `bpchar`). */
  base: string;
  notNull: boolean;
}

interface ForeignKey {
  child: string;
  parent: string;
  /** confdeltype: a no action, r restrict, c cascade, n set null, d set default. */
  onDelete: string;
  name: string;
  columns: string[];
  refColumns: string[];
}

/** The column types a subject id may be matched in: ids are text, integers, decimals or UUIDs. */
const SUBJECT_TYPES =
  /^(text|character varying|bpchar|citext|[\w.]*\.?citext|smallint|integer|bigint|numeric|uuid)$/;

function fixedFits(strategy: AnonymiseStrategy, kind: ValueKind, col: Column): string | undefined {
  if (strategy === 'null') return col.notNull ? 'null on a NOT NULL column' : undefined;
  if (typeof strategy !== 'object' || !('fixed' in strategy)) return undefined;
  const v = strategy.fixed;
  if (kind === 'text' && typeof v !== 'string') return 'fixed must be a string for a text column';
  if ((kind === 'int4' || kind === 'int8') && !Number.isInteger(v)) return 'fixed must be a whole number';
  return undefined;
}

// ---- selectors: how each location finds the subject's rows ----

/**
 * One subject bound to a resolved map: the subject columns' types its id is a value of, and the
 * pseudonym each location's subject field holds once anonymised (rows anonymised earlier are found
 * by it, so a re-run and the verify pass still see them, and what hangs below them).
 */
export interface SubjectBinding {
  castable: ReadonlySet<string>;
  pseudonyms: ReadonlyMap<string, string | number>;
}

const INTEGER = /^-?(0|[1-9]\d*)$/;
const RANGES: Record<string, bigint> = { smallint: 2n ** 15n, integer: 2n ** 31n, bigint: 2n ** 63n };

/**
 * Whether `id`, exactly as given, is a value of the type: decided here, not by a cast, because a cast
 * that fails puts the id in the server's log; and only canonical forms (no sign, space, leading zero
 * or upper-case UUID), so that every store reads the same id the same way.
 */
function isValueOf(type: string, id: string): boolean {
  if (type in RANGES) {
    if (!INTEGER.test(id)) return false;
    const n = BigInt(id);
    return n >= -RANGES[type]! && n < RANGES[type]!;
  }
  if (type === 'numeric') return /^-?(0|[1-9]\d*)(\.\d+)?$/.test(id);
  if (type === 'uuid') return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(id);
  return true; // text types hold any id
}

export function bindSubject(map: ResolvedMap, src: PseudonymSource): SubjectBinding {
  const castable = new Set(map.postgres.map((l) => l.subjectType).filter((t) => isValueOf(t, src.subjectId)));
  const pseudonyms = new Map<string, string | number>();
  for (const loc of [...map.postgres, ...map.mongo]) {
    const p = pseudonymOfSubject(loc, src);
    if (p !== undefined && p !== null && typeof p !== 'boolean') pseudonyms.set(loc.id, p);
  }
  return { castable, pseudonyms };
}

const sqlLiteral = (v: string | number) => `'${String(v).replaceAll("'", "''")}'`;

/**
 * The SQL condition (on the location's own table, unaliased) that finds the subject's rows; `$1` is
 * the subject id as text. Null when no row can be the subject's (the id is not a value of the
 * column's type, and there is no pseudonym to look for).
 */
export function pgCondition(
  loc: ResolvedLocation,
  all: readonly ResolvedLocation[],
  schema: string,
  bound: SubjectBinding,
): string | null {
  if (loc.subjectField) {
    const values = [
      ...(bound.castable.has(loc.subjectType) ? [`$1::${loc.subjectType}`] : []),
      ...(bound.pseudonyms.has(loc.id)
        ? [`${sqlLiteral(bound.pseudonyms.get(loc.id)!)}::${loc.subjectType}`]
        : []),
    ];
    return values.length ? `${quoteIdent(loc.subjectField)} IN (${values.join(', ')})` : null;
  }
  const parent = all.find((p) => p.name === loc.through!.location)!;
  const inner = pgCondition(parent, all, schema, bound);
  if (inner === null) return null;
  return (
    `${quoteIdent(loc.through!.field)} IN (SELECT ${quoteIdent(loc.through!.key)} ` +
    `FROM ${quoteIdent(schema)}.${quoteIdent(parent.physical)} WHERE ${inner})`
  );
}

/** The subject id as each type a MongoDB field may hold it in, canonical forms only; never operators. */
export function mongoSubjectValues(types: readonly MongoSubjectType[], subjectId: string): unknown[] {
  const values: unknown[] = [];
  for (const t of types) {
    if (t === 'string') values.push(subjectId);
    else if (t === 'number' && INTEGER.test(subjectId)) {
      // Beyond 2^53 a double is another number: match the exact 64-bit integer instead.
      const n = BigInt(subjectId);
      if (n >= -(2n ** 63n) && n < 2n ** 63n)
        values.push(Number.isSafeInteger(Number(subjectId)) ? Number(subjectId) : Long.fromBigInt(n));
    } else if (
      t === 'number' &&
      /^-?(0|[1-9]\d*)\.\d*[1-9]$/.test(subjectId) &&
      String(Number(subjectId)) === subjectId
    )
      values.push(Number(subjectId));
    else if (t === 'objectId' && /^[0-9a-f]{24}$/.test(subjectId)) values.push(new ObjectId(subjectId));
  }
  return values;
}

/** Keys a path may follow: plain values. A null would match every document without the field. */
const isKey = (v: unknown) =>
  typeof v === 'string' ||
  (typeof v === 'number' && Number.isFinite(v)) ||
  v instanceof Long ||
  v instanceof ObjectId ||
  v instanceof Date;

/** The filter that finds the subject's documents; null when none can refer to it. */
export async function mongoFilter(
  loc: ResolvedLocation,
  all: readonly ResolvedLocation[],
  db: Db,
  subjectId: string,
  bound: SubjectBinding,
): Promise<Filter<Document> | null> {
  if (loc.subjectField) {
    const values = mongoSubjectValues(loc.mongoTypes, subjectId);
    if (bound.pseudonyms.has(loc.id)) values.push(bound.pseudonyms.get(loc.id));
    return values.length ? { [loc.subjectField]: { $in: values } } : null;
  }
  const parent = all.find((p) => p.name === loc.through!.location)!;
  const inner = await mongoFilter(parent, all, db, subjectId, bound);
  if (!inner) return null;
  const keys = (await db.collection(parent.physical).distinct(loc.through!.key, inner)).filter(isKey);
  return keys.length ? { [loc.through!.field]: { $in: keys } } : null;
}

/** What each anonymised field must hold for this subject. */
export function expectedValues(
  loc: ResolvedLocation,
  src: PseudonymSource,
): { field: string; type: string; value: string | number | boolean | null }[] {
  return loc.anonymise.map((a) => ({
    field: a.field,
    type: a.type,
    value: anonymisedValue(a.strategy, a.kind, a.field, src),
  }));
}

/** The subject's pseudonym in the location's subject field, when anonymised with one of its own. */
function pseudonymOfSubject(
  loc: ResolvedLocation,
  src: PseudonymSource,
): string | number | boolean | null | undefined {
  const a = loc.anonymise.find((x) => x.field === loc.subjectField);
  if (!a || !isSubjectUnique(a.strategy)) return undefined;
  return anonymisedValue(a.strategy, a.kind, a.field, src);
}
