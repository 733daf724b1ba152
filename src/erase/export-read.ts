/**
 * Reading one data subject's rows and documents from each mapped location, with the same selectors
 * erasure uses (resolve.ts), in batches. Nothing here writes to the tenant's stores.
 *
 * PostgreSQL rows come as `row_to_json(row)::text`, passed on as the server wrote it and never parsed
 * here, so a bigint beyond 2^53 keeps every digit. MongoDB documents are relaxed Extended JSON (plain
 * JSON for strings, numbers, booleans; `{"$date": ...}`, `{"$oid": ...}` for the rest), except that
 * a 64-bit integer a JavaScript number cannot hold exactly stays `{"$numberLong": "..."}`.
 */
import { BSON, Long, type Db, type Document } from 'mongodb';
import type pg from 'pg';
import { quoteIdent } from '../stores/identifiers.ts';
import { mongoFilter, pgCondition, type ResolvedLocation, type SubjectBinding } from './resolve.ts';

export const READ_BATCH = 1_000;
const CURSOR = 'dbfleet_export';

/**
 * The subject's rows of one table as JSON text, batch by batch, through a cursor: `client` must be in
 * a transaction (the export's one, REPEATABLE READ, so that every table is read at one moment and a
 * row reached through another is the one that was there).
 */
export async function* postgresRows(
  client: pg.ClientBase,
  schema: string,
  loc: ResolvedLocation,
  all: readonly ResolvedLocation[],
  bound: SubjectBinding,
  subjectId: string,
): AsyncGenerator<string[]> {
  const cond = pgCondition(loc, all, schema, bound);
  if (cond === null) return; // neither the id nor a pseudonym of it can be in the column
  // `x.*` is the whole row even when the table has a column named x.
  await client.query(
    `DECLARE ${CURSOR} NO SCROLL CURSOR FOR SELECT row_to_json(x.*)::text AS j ` +
      `FROM ${quoteIdent(schema)}.${quoteIdent(loc.physical)} AS x WHERE ${cond}`,
    [subjectId],
  );
  let closed = false;
  try {
    for (;;) {
      const { rows } = await client.query<{ j: string }>(`FETCH ${READ_BATCH} FROM ${CURSOR}`);
      if (rows.length) yield rows.map((r) => r.j);
      if (rows.length < READ_BATCH) break;
    }
    await client.query(`CLOSE ${CURSOR}`);
    closed = true;
  } finally {
    // Left early (a failed write downstream): close it so the next table's cursor can take the name;
    // in an aborted transaction this fails, and the rollback closes it.
    if (!closed) await client.query(`CLOSE ${CURSOR}`).catch(() => undefined);
  }
}

/** Longs beyond what a double holds exactly stay canonical: relaxed EJSON would round them. */
function exactLongs(value: unknown): unknown {
  if (value instanceof Long)
    return Number.isSafeInteger(value.toNumber()) ? value : { $numberLong: value.toString() };
  if (typeof value === 'bigint')
    return Number.isSafeInteger(Number(value)) ? Number(value) : { $numberLong: value.toString() };
  if (Array.isArray(value)) return value.map(exactLongs);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, exactLongs(v)]));
  return value;
}

export function documentJson(doc: Document): string {
  return BSON.EJSON.stringify(exactLongs(doc) as Document, { relaxed: true });
}

/** The subject's documents of one collection as relaxed Extended JSON, batch by batch. */
export async function* mongoDocuments(
  db: Db,
  loc: ResolvedLocation,
  all: readonly ResolvedLocation[],
  subjectId: string,
  bound: SubjectBinding,
): AsyncGenerator<string[]> {
  const filter = await mongoFilter(loc, all, db, subjectId, bound);
  if (!filter) return;
  let batch: string[] = [];
  for await (const doc of db.collection(loc.physical).find(filter, { batchSize: READ_BATCH })) {
    batch.push(documentJson(doc));
    if (batch.length === READ_BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}
