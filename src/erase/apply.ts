/**
 * Applying a resolved map to one subject: counting what would change (dry run), changing it, and the
 * verify pass. PostgreSQL in one transaction; MongoDB location by location, each step idempotent (a
 * delete finds nothing the second time, an update filters out rows that already hold their new
 * values). The same code erases live data (erase job) and a restore's staged copy.
 */
import type { Document, Filter } from 'mongodb';
import type pg from 'pg';
import { quoteIdent } from '../stores/identifiers.ts';
import type { PseudonymSource } from './anonymise.ts';
import {
  castableTypes,
  expectedValues,
  mongoFilter,
  pgCondition,
  pseudonymOfSubject,
  type MapTarget,
  type ResolvedLocation,
  type ResolvedMap,
} from './resolve.ts';

export type Counts = Record<string, number>;

// ---- PostgreSQL ----

interface PgPlan {
  loc: ResolvedLocation;
  table: string;
  /** Null: the subject cannot be in this table. */
  cond: string | null;
  /** `(a IS DISTINCT FROM $2::t OR ...)`, and the values from $2 on. */
  distinct: string;
  values: unknown[];
}

/**
 * The subject columns' types the subject id is a value of. Asked before a transaction begins: a
 * failed cast inside one would abort it.
 */
export const subjectTypes = (map: ResolvedMap, target: MapTarget, subjectId: string) =>
  castableTypes(target.pg, map.postgres, subjectId);

function planPostgres(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
  castable: ReadonlySet<string>,
): PgPlan[] {
  return map.postgres.map((loc) => {
    const expected = expectedValues(loc, src);
    return {
      loc,
      table: `${quoteIdent(target.schema)}.${quoteIdent(loc.physical)}`,
      cond: pgCondition(loc, map.postgres, target.schema, castable),
      distinct: expected.length
        ? `(${expected.map((e, i) => `${quoteIdent(e.field)} IS DISTINCT FROM $${i + 2}::${e.type}`).join(' OR ')})`
        : 'false',
      values: expected.map((e) => (e.value === null ? null : String(e.value))),
    };
  });
}

const countOf = async (c: pg.ClientBase, sql: string, params: unknown[]) =>
  Number((await c.query<{ n: string }>(sql, params)).rows[0]!.n);

/** What an erase would change in each table: rows to delete, rows with a field still to anonymise. */
export async function countPostgres(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<Counts> {
  const counts: Counts = {};
  for (const p of planPostgres(map, target, src, await subjectTypes(map, target, src.subjectId)))
    counts[p.loc.id] =
      p.cond === null
        ? 0
        : p.loc.action === 'delete'
          ? await countOf(target.pg, `SELECT count(*) AS n FROM ${p.table} WHERE ${p.cond}`, [src.subjectId])
          : await countOf(
              target.pg,
              `SELECT count(*) AS n FROM ${p.table} WHERE ${p.cond} AND ${p.distinct}`,
              [src.subjectId, ...p.values],
            );
  return counts;
}

/**
 * Every table's deletes and updates, in order, in the caller's transaction (`target.pg` must be in
 * one; `castable` from subjectTypes, asked before it began). Returns the rows changed per table.
 */
export async function erasePostgres(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
  castable: ReadonlySet<string>,
): Promise<Counts> {
  const counts: Counts = {};
  for (const p of planPostgres(map, target, src, castable)) {
    if (p.cond === null) {
      counts[p.loc.id] = 0;
      continue;
    }
    if (p.loc.action === 'delete') {
      const r = await target.pg.query(`DELETE FROM ${p.table} WHERE ${p.cond}`, [src.subjectId]);
      counts[p.loc.id] = r.rowCount ?? 0;
    } else {
      const set = p.loc.anonymise.map((a, i) => `${quoteIdent(a.field)} = $${i + 2}::${a.type}`).join(', ');
      const r = await target.pg.query(`UPDATE ${p.table} SET ${set} WHERE ${p.cond} AND ${p.distinct}`, [
        src.subjectId,
        ...p.values,
      ]);
      counts[p.loc.id] = r.rowCount ?? 0;
    }
  }
  return counts;
}

/**
 * Rows that still refer to the subject (deleted tables), or that refer to it or its pseudonym and
 * hold anything but the anonymised values (anonymised tables). All zero: verified.
 */
export async function verifyPostgres(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<Counts> {
  const remaining: Counts = {};
  for (const p of planPostgres(map, target, src, await subjectTypes(map, target, src.subjectId))) {
    const pseudonym = pseudonymOfSubject(p.loc, src);
    const found = [
      ...(p.cond === null ? [] : [p.cond]),
      ...(pseudonym === undefined || pseudonym === null
        ? []
        : [`${quoteIdent(p.loc.subjectField!)} = $${p.values.length + 2}::${p.loc.subjectType}`]),
    ];
    if (found.length === 0) {
      remaining[p.loc.id] = 0;
      continue;
    }
    const params = [
      src.subjectId,
      ...p.values,
      ...(pseudonym === undefined || pseudonym === null ? [] : [String(pseudonym)]),
    ];
    const where = `(${found.join(' OR ')})${p.loc.action === 'delete' ? '' : ` AND ${p.distinct}`}`;
    remaining[p.loc.id] = await countOf(
      target.pg,
      `SELECT count(*) AS n FROM ${p.table} WHERE ${where}`,
      params,
    );
  }
  return remaining;
}

// ---- MongoDB ----

function stillToAnonymise(loc: ResolvedLocation, src: PseudonymSource): Filter<Document> {
  return { $or: expectedValues(loc, src).map((e) => ({ [e.field]: { $ne: e.value } })) };
}

/** What an erase would change in one collection (and what `eraseMongoLocation` then changes). */
export async function countMongoLocation(
  loc: ResolvedLocation,
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<number> {
  const filter = await mongoFilter(loc, map.mongo, target.mongo, src.subjectId);
  if (!filter) return 0;
  const coll = target.mongo.collection(loc.physical);
  return loc.action === 'delete'
    ? coll.countDocuments(filter)
    : coll.countDocuments({ $and: [filter, stillToAnonymise(loc, src)] });
}

export async function eraseMongoLocation(
  loc: ResolvedLocation,
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<number> {
  const filter = await mongoFilter(loc, map.mongo, target.mongo, src.subjectId);
  if (!filter) return 0;
  const coll = target.mongo.collection(loc.physical);
  if (loc.action === 'delete') return (await coll.deleteMany(filter)).deletedCount;
  const set = Object.fromEntries(expectedValues(loc, src).map((e) => [e.field, e.value]));
  return (await coll.updateMany({ $and: [filter, stillToAnonymise(loc, src)] }, { $set: set })).modifiedCount;
}

export async function verifyMongoLocation(
  loc: ResolvedLocation,
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<number> {
  const filter = await mongoFilter(loc, map.mongo, target.mongo, src.subjectId);
  const pseudonym = pseudonymOfSubject(loc, src);
  const found: Filter<Document>[] = [
    ...(filter ? [filter] : []),
    ...(pseudonym === undefined || pseudonym === null ? [] : [{ [loc.subjectField!]: pseudonym }]),
  ];
  if (found.length === 0) return 0;
  const coll = target.mongo.collection(loc.physical);
  return loc.action === 'delete'
    ? coll.countDocuments({ $or: found })
    : coll.countDocuments({ $and: [{ $or: found }, stillToAnonymise(loc, src)] });
}
