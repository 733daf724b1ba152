/**
 * Which PostgreSQL errors are one row's fault, which row of a COPY they name, and why the row was
 * refused, in words that never quote the row: PostgreSQL's messages and details quote values
 * (`date/time field value out of range: "0000-01-01"`, `Key (email)=(a@b.test) already exists`) and
 * rows may hold personal data. A reason is built from the SQLSTATE and identifiers only.
 */

import { isPgDataRefusal, pgDataErrorName } from '../../src/errors.ts';

/** The fields of pg's DatabaseError read here. */
export interface PgError {
  code: string;
  constraint?: string | undefined;
  column?: string | undefined;
  where?: string | undefined;
}

/**
 * `err` when it is PostgreSQL refusing one row: a data exception (SQLSTATE class 22) or an integrity
 * violation (class 23). Not a NOT NULL violation on a column outside `columns` (the ones written):
 * then every row fails alike, and the fault is the fixture schema's, not a row's.
 */
export function rowRefusal(err: unknown, columns: readonly string[]): PgError | undefined {
  if (!isPgDataRefusal(err)) return undefined;
  const e = err as PgError;
  if (e.code === '23502' && !(e.column && columns.includes(e.column))) return undefined;
  return e;
}

/**
 * The line of a COPY into `relation` (its unqualified name) and the column that the error's context
 * names (`COPY users, line 3, column created_at: "0000-01-01"`). The rest of that context is the
 * refused value or line: never read. The column is given only when it is one of `columns`.
 */
export function copyContext(
  err: PgError,
  relation: string,
  columns: readonly string[],
): { line?: number; column?: string } {
  const prefix = `COPY ${relation}, line `;
  const context = err.where?.split('\n').find((l) => l.startsWith(prefix));
  if (!context) return {};
  const digits = /^[0-9]{1,15}/.exec(context.slice(prefix.length))?.[0];
  if (!digits) return {};
  const rest = context.slice(prefix.length + digits.length);
  const column = columns.find((c) => rest.startsWith(`, column ${c}: `) || rest === `, column ${c}`);
  return column === undefined ? { line: Number(digits) } : { line: Number(digits), column };
}

/**
 * Why PostgreSQL refused a row, from its SQLSTATE, constraint and column names only:
 * `refused by PostgreSQL: duplicate key (constraint users_pkey, SQLSTATE 23505)`. `copy` names the
 * COPY's target and columns, to find the column in the error's context.
 */
export function refusalReason(err: PgError, copy?: { relation: string; columns: readonly string[] }): string {
  const what = pgDataErrorName(err.code);
  const column =
    copy && err.column && copy.columns.includes(err.column)
      ? err.column
      : copy && copyContext(err, copy.relation, copy.columns).column;
  const names = [
    ...(err.constraint ? [`constraint ${err.constraint}`] : []),
    ...(column ? [`column ${column}`] : []),
  ];
  return `refused by PostgreSQL: ${what} (${[...names, `SQLSTATE ${err.code}`].join(', ')})`;
}
