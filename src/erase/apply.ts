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
  bindSubject,
  expectedValues,
  mongoFilter,
  pgCondition,
  type MapTarget,
  type ResolvedLocation,
  type ResolvedMap,
} from './resolve.ts';

export type Counts = Record<string, number>;

// ---- PostgreSQL ----

interface PgPlan {
  loc: ResolvedLocation;
  table: string;
  /** Null: no row of this table can be the subject's. */
  cond: string | null;
  /** `(a::text IS DISTINCT FROM ($2::t)::text OR ...)`, and the values from $2 on. */
  distinct: string;
  values: unknown[];
}

function planPostgres(map: ResolvedMap, target: MapTarget, src: PseudonymSource): PgPlan[] {
  const bound = bindSubject(map, src);
  return map.postgres.map((loc) => {
    const expected = expectedValues(loc, src);
    return {
      loc,
      table: `${quoteIdent(target.schema)}.${quoteIdent(loc.physical)}`,
      cond: pgCondition(loc, map.postgres, target.schema, bound),
      // As text: every type has it (json, xml and point have no equality operator).
      distinct: expected.length
        ? `(${expected
            .map((e, i) => `(${quoteIdent(e.field)})::text IS DISTINCT FROM ($${i + 2}::${e.type})::text`)
            .join(' OR ')})`
        : 'false',
      values: expected.map((e) => (e.value === null ? null : String(e.value))),
    };
  });
}

const countOf = async (c: pg.ClientBase, sql: string, params: unknown[]) =>
  Number((await c.query<{ n: string }>(sql, params)).rows[0]!.n);

/**
 * Rows each table still holds of the subject: for a delete, rows found; for an anonymise, rows found
 * (by id or pseudonym) with a field not yet its anonymised value. Before an erase: what it will
 * change; after: what the verify pass finds left (all zero: verified).
 */
export async function countPostgres(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<Counts> {
  const counts: Counts = {};
  for (const p of planPostgres(map, target, src))
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

export const verifyPostgres = countPostgres;

/**
 * Every table's deletes and updates, in order, in the caller's transaction (`target.pg` must be in
 * one). Returns the rows changed per table.
 */
export async function erasePostgres(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<Counts> {
  const counts: Counts = {};
  for (const p of planPostgres(map, target, src)) {
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

// ---- MongoDB ----

function stillToAnonymise(loc: ResolvedLocation, src: PseudonymSource): Filter<Document> {
  return { $or: expectedValues(loc, src).map((e) => ({ [e.field]: { $ne: e.value } })) };
}

const filterOf = (loc: ResolvedLocation, map: ResolvedMap, target: MapTarget, src: PseudonymSource) =>
  mongoFilter(loc, map.mongo, target.mongo, src.subjectId, bindSubject(map, src));

/** What a collection still holds of the subject (as countPostgres). */
export async function countMongoLocation(
  loc: ResolvedLocation,
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<number> {
  const filter = await filterOf(loc, map, target, src);
  if (!filter) return 0;
  const coll = target.mongo.collection(loc.physical);
  return loc.action === 'delete'
    ? coll.countDocuments(filter)
    : coll.countDocuments({ $and: [filter, stillToAnonymise(loc, src)] });
}

export const verifyMongoLocation = countMongoLocation;

export async function eraseMongoLocation(
  loc: ResolvedLocation,
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
): Promise<number> {
  const filter = await filterOf(loc, map, target, src);
  if (!filter) return 0;
  const coll = target.mongo.collection(loc.physical);
  if (loc.action === 'delete') return (await coll.deleteMany(filter)).deletedCount;
  const set = Object.fromEntries(expectedValues(loc, src).map((e) => [e.field, e.value]));
  return (await coll.updateMany({ $and: [filter, stillToAnonymise(loc, src)] }, { $set: set })).modifiedCount;
}
