/** Encodes rows in PostgreSQL's COPY text format (tab-separated, \N for null, backslash escapes). */

const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escape(text: string): string {
  return /[\\\n\r\t]/.test(text) ? text.replace(/[\\\n\r\t]/g, (c) => ESCAPES[c]!) : text;
}

export function copyValue(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  switch (typeof value) {
    case 'string':
      return escape(value);
    case 'number':
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? 't' : 'f';
    default:
      if (value instanceof Date) return value.toISOString();
      return escape(JSON.stringify(value)); // objects and arrays into json/jsonb columns
  }
}

export function copyLines(rows: readonly Record<string, unknown>[], columns: readonly string[]): string {
  let out = '';
  for (const row of rows) {
    for (let i = 0; i < columns.length; i++) {
      out += (i ? '\t' : '') + copyValue(row[columns[i]!]);
    }
    out += '\n';
  }
  return out;
}
