/**
 * Splits SQL text into statements at top-level semicolons, skipping quotes, dollar quotes and comments.
 * Needed only for migrations that run outside a transaction: PostgreSQL runs a multi-statement string
 * as one implicit transaction, where CREATE INDEX CONCURRENTLY is refused.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === "'" || c === '"') {
      i = sql.indexOf(c, i + 1);
      // A doubled quote is an escaped one: indexOf lands on the first, the loop steps over the second.
      if (i < 0) break;
      i++;
    } else if (c === '-' && next === '-') {
      const eol = sql.indexOf('\n', i);
      i = eol < 0 ? n : eol + 1;
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === '$') {
      const tag = /^\$[A-Za-z_0-9]*\$/.exec(sql.slice(i))?.[0];
      if (tag) {
        const end = sql.indexOf(tag, i + tag.length);
        i = end < 0 ? n : end + tag.length;
      } else i++;
    } else if (c === ';') {
      out.push(sql.slice(start, i));
      start = ++i;
    } else i++;
  }
  out.push(sql.slice(start));
  return out.map((s) => s.trim()).filter((s) => s.replace(/--[^\n]*\n?/g, '').trim() !== '');
}
