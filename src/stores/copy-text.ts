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

/** One row as a line of COPY text. */
export function copyLine(row: Record<string, unknown>, columns: readonly string[]): string {
  let out = '';
  for (let i = 0; i < columns.length; i++) out += (i ? '\t' : '') + copyValue(row[columns[i]!]);
  return out + '\n';
}

/** Which column holds a NUL character, which PostgreSQL text and jsonb cannot store, as a reason. */
export function nulRefusal(row: Record<string, unknown>, columns: readonly string[]): string | undefined {
  for (const column of columns) {
    if (holdsNul(row[column]))
      return `${column}: contains a NUL character, which PostgreSQL text cannot hold`;
  }
  return undefined;
}

function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (value === null || typeof value !== 'object' || value instanceof Date) return false;
  return Object.entries(value).some(([k, v]) => k.includes('\0') || holdsNul(v));
}

/**
 * COPY text accumulated off the JS heap. A batch of rows held as objects until its COPY survives
 * young-generation collections and gets promoted, and collecting that old generation was a quarter of
 * a million-row load's CPU; encoded at once, each row dies young and the batch is a single buffer.
 */
export class CopyTextBuffer {
  #buf = Buffer.allocUnsafe(1 << 16);
  /** The buffer handed out by the last take(): reused by the one after, so batches allocate nothing. */
  #spare = Buffer.allocUnsafe(1 << 16);
  #length = 0;

  /**
   * Appends the row's line, unless PostgreSQL would refuse it: then it returns why and appends
   * nothing (one such line would fail the whole COPY).
   */
  appendRow(row: Record<string, unknown>, columns: readonly string[]): string | undefined {
    const line = copyLine(row, columns);
    // A NUL is raw in text and escaped (u0000) in JSON: two fast scans, the exact check only on a hit.
    if (line.includes('\0') || line.includes('u0000')) {
      const refusal = nulRefusal(row, columns);
      if (refusal) return refusal;
    }
    const worst = line.length * 3; // UTF-16 code units to UTF-8 bytes, at most
    if (this.#length + worst > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + worst));
      this.#buf.copy(bigger, 0, 0, this.#length);
      this.#buf = bigger;
    }
    this.#length += this.#buf.write(line, this.#length, 'utf8');
    return undefined;
  }

  /**
   * The text so far, and the buffer starts over. The bytes returned stay valid until the next call
   * but one: callers write one batch at a time, and large fresh allocations per batch made V8 run
   * full collections for the external memory.
   */
  take(): Buffer {
    const out = this.#buf.subarray(0, this.#length);
    [this.#buf, this.#spare] = [this.#spare, this.#buf];
    this.#length = 0;
    return out;
  }
}
