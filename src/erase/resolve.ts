/**
 * The personal-data map against one tenant's real schema: every table, column and collection it
 * names must exist (strict, before an erase or export changes or reads anything), the order of work
 * follows the references (a location reached through another, and a table a foreign key ties to a
 * table being deleted from, come first), and each location gets the selector that finds the
 * subject's rows in it. A restore resolves leniently: a table or column an older backup does not
 * have cannot hold anyone's data, so it is skipped and named.
 */
import type { Db, Document, Filter } from 'mongodb';
import { ObjectId } from 'mongodb';
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
  /** Whether the subject (or path) field leads an index: without one, every erase scans the table. */
  indexed: boolean;
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
  options: { tenant: string; lenient?: boolean },
): Promise<ResolvedMap> {
  const problems: string[] = [];
  const skipped: string[] = [];
  const miss = (what: string) => (options.lenient ? skipped : problems).push(what);
  const pgLocs = map.filter((l) => l.store === 'postgres');
  const mongoLocs = map.filter((l) => l.store === 'mongo');

  const columns = new Map<string, Map<string, string>>();
  const indexedCols = new Set<string>();
  const fks: { child: string; parent: string; onDelete: string; name: string }[] = [];
  if (pgLocs.length) {
    const names = pgLocs.map((l) => l.name);
    const { rows } = await target.pg.query<{ table: string; column: string; type: string }>(
      `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname = ANY($2)`,
      [target.schema, names],
    );
    for (const r of rows) {
      if (!columns.has(r.table)) columns.set(r.table, new Map());
      columns.get(r.table)!.set(r.column, r.type);
    }
    const idx = await target.pg.query<{ table: string; column: string }>(
      `SELECT c.relname AS table, a.attname AS column
       FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = i.indkey[0]
       WHERE n.nspname = $1 AND c.relname = ANY($2)`,
      [target.schema, names],
    );
    for (const r of idx.rows) indexedCols.add(`${r.table}.${r.column}`);
    const fk = await target.pg.query<{ child: string; parent: string; on_delete: string; name: string }>(
      `SELECT ch.relname AS child, pa.relname AS parent, con.confdeltype AS on_delete, con.conname AS name
       FROM pg_constraint con JOIN pg_class ch ON ch.oid = con.conrelid JOIN pg_class pa ON pa.oid = con.confrelid
       JOIN pg_namespace n ON n.oid = pa.relnamespace
       WHERE con.contype = 'f' AND n.nspname = $1 AND pa.relname = ANY($2) AND ch.relnamespace = pa.relnamespace`,
      [target.schema, names],
    );
    fks.push(
      ...fk.rows.map((r) => ({ child: r.child, parent: r.parent, onDelete: r.on_delete, name: r.name })),
    );
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
      indexed: true,
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
      r.subjectType = cols.get(ref)!;
      r.indexed = indexedCols.has(`${l.name}.${ref}`);
      for (const [field, strategy] of Object.entries(l.anonymise ?? {})) {
        const type = cols.get(field);
        if (!type) {
          miss(`${where}: no column ${field} (to anonymise)`);
          continue;
        }
        const kind = pgKind(type);
        const unfit = strategyFits(strategy, kind);
        if (unfit) problems.push(`${where}.${field} (${type}): ${unfit}`);
        r.anonymise.push({ field, strategy, kind, type });
      }
    } else {
      if (!collections.has(physical)) {
        miss(`${where}: no such collection`);
        continue;
      }
      const indexes = await target.mongo.collection(physical).listIndexes().toArray();
      r.indexed = ref === '_id' || indexes.some((i) => Object.keys(i.key as Document)[0] === ref);
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
  // A table outside the map whose foreign key forbids deleting a mapped row would fail the erase
  // half-way; say so before anything changes.
  const deleting = new Set(pgLocs.filter((l) => l.action === 'delete').map((l) => l.name));
  for (const f of fks)
    if (deleting.has(f.parent) && !columns.has(f.child) && (f.onDelete === 'a' || f.onDelete === 'r'))
      problems.push(
        `table ${f.child} refers to ${f.parent} (${f.name}) and is not in the map: deleting a subject's ${f.parent} rows would fail`,
      );
  if (problems.length) throw new MapMismatchError(options.tenant, problems);
  const order = (store: 'postgres' | 'mongo') =>
    workOrder(
      [...resolved.values()].filter((r) => r.store === store),
      store === 'postgres' ? fks : [],
    );
  return { postgres: order('postgres'), mongo: order('mongo'), skipped };
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

// ---- selectors: how each location finds the subject's rows ----

/**
 * The SQL condition (on the location's own table, unaliased) that finds the subject's rows; `$1` is
 * the subject id as text. Null when the subject id cannot be a value of the column's type (then the
 * table cannot hold the subject).
 */
export function pgCondition(
  loc: ResolvedLocation,
  all: readonly ResolvedLocation[],
  schema: string,
  castable: ReadonlySet<string>,
): string | null {
  if (loc.subjectField)
    return castable.has(loc.subjectType) ? `${quoteIdent(loc.subjectField)} = $1::${loc.subjectType}` : null;
  const parent = all.find((p) => p.name === loc.through!.location)!;
  const inner = pgCondition(parent, all, schema, castable);
  if (inner === null) return null;
  return (
    `${quoteIdent(loc.through!.field)} IN (SELECT ${quoteIdent(loc.through!.key)} ` +
    `FROM ${quoteIdent(schema)}.${quoteIdent(parent.physical)} WHERE ${inner})`
  );
}

/** Of the subject columns' types, those the subject id is a value of (`'abc'` is no bigint). */
export async function castableTypes(
  client: pg.ClientBase,
  locs: readonly ResolvedLocation[],
  subjectId: string,
): Promise<Set<string>> {
  const ok = new Set<string>();
  for (const type of new Set(locs.filter((l) => l.subjectField).map((l) => l.subjectType))) {
    try {
      await client.query(`SELECT $1::${type}`, [subjectId]);
      ok.add(type);
    } catch (err) {
      // Class 22 (data exception): not a value of the type. Anything else is a real fault.
      if (!String((err as { code?: string }).code).startsWith('22')) throw err;
    }
  }
  return ok;
}

/** The subject id as each type a MongoDB field may hold it in; values only, never operators. */
export function mongoSubjectValues(types: readonly MongoSubjectType[], subjectId: string): unknown[] {
  const values: unknown[] = [];
  for (const t of types) {
    if (t === 'string') values.push(subjectId);
    else if (t === 'number' && /^-?\d+(\.\d+)?$/.test(subjectId) && Number.isFinite(Number(subjectId)))
      values.push(Number(subjectId));
    else if (t === 'objectId' && /^[0-9a-fA-F]{24}$/.test(subjectId)) values.push(new ObjectId(subjectId));
  }
  return values;
}

/** The filter that finds the subject's documents; null when none can refer to it. */
export async function mongoFilter(
  loc: ResolvedLocation,
  all: readonly ResolvedLocation[],
  db: Db,
  subjectId: string,
): Promise<Filter<Document> | null> {
  if (loc.subjectField) {
    const values = mongoSubjectValues(loc.mongoTypes, subjectId);
    return values.length ? { [loc.subjectField]: { $in: values } } : null;
  }
  const parent = all.find((p) => p.name === loc.through!.location)!;
  const inner = await mongoFilter(parent, all, db, subjectId);
  if (!inner) return null;
  const keys = await db.collection(parent.physical).distinct(loc.through!.key, inner);
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

/**
 * The subject's pseudonym in the location's subject field when that field is anonymised with a
 * value of the subject's own: anonymised rows are found by it to verify their other fields.
 */
export function pseudonymOfSubject(
  loc: ResolvedLocation,
  src: PseudonymSource,
): string | number | boolean | null | undefined {
  const a = loc.anonymise.find((x) => x.field === loc.subjectField);
  if (!a || !isSubjectUnique(a.strategy)) return undefined;
  return anonymisedValue(a.strategy, a.kind, a.field, src);
}
