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
 * One batch of COPY text, one line per row, with where each row's line ends and the source line it
 * came from: a range of rows is a view of the same bytes, so retrying part of a batch re-encodes
 * nothing.
 */
export class CopyBatch {
  readonly bytes: Buffer;
  readonly rows: number;
  readonly #ends: Float64Array;
  readonly #lines: Float64Array;

  constructor(bytes: Buffer, rows: number, ends: Float64Array, lines: Float64Array) {
    this.bytes = bytes;
    this.rows = rows;
    this.#ends = ends;
    this.#lines = lines;
  }

  /** The text of rows [from, to), a view of `bytes`. */
  slice(from: number, to: number): Buffer {
    return this.bytes.subarray(from === 0 ? 0 : this.#ends[from - 1], this.#ends[to - 1]);
  }

  /** The source line given with row `row` (0-based). */
  line(row: number): number {
    return this.#lines[row]!;
  }
}

/**
 * COPY text accumulated off the JS heap. A batch of rows held as objects until its COPY survives
 * young-generation collections and gets promoted, and collecting that old generation was a quarter of
 * a million-row load's CPU; encoded at once, each row dies young and the batch is a single buffer.
 * Per row it keeps two numbers, also off the heap: where its line ends and its source line.
 */
export class CopyTextBuffer {
  #buf = Buffer.allocUnsafe(1 << 16);
  /** The buffer handed out by the last take(): reused by the one after, so batches allocate nothing. */
  #spare = Buffer.allocUnsafe(1 << 16);
  #length = 0;
  #ends = new Float64Array(1024);
  #lines = new Float64Array(1024);
  #spareEnds = new Float64Array(1024);
  #spareLines = new Float64Array(1024);
  #rows = 0;

  /**
   * Appends the row's line, noting `line` (its source line) for CopyBatch.line, unless PostgreSQL
   * would refuse it: then it returns why and appends nothing (one such line would fail the whole
   * COPY).
   */
  appendRow(row: Record<string, unknown>, columns: readonly string[], line: number): string | undefined {
    const text = copyLine(row, columns);
    // A NUL is raw in text and escaped (u0000) in JSON: two fast scans, the exact check only on a hit.
    if (text.includes('\0') || text.includes('u0000')) {
      const refusal = nulRefusal(row, columns);
      if (refusal) return refusal;
    }
    const worst = text.length * 3; // UTF-16 code units to UTF-8 bytes, at most
    if (this.#length + worst > this.#buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#length + worst));
      this.#buf.copy(bigger, 0, 0, this.#length);
      this.#buf = bigger;
    }
    if (this.#rows === this.#ends.length) {
      this.#ends = grown(this.#ends);
      this.#lines = grown(this.#lines);
    }
    this.#length += this.#buf.write(text, this.#length, 'utf8');
    this.#ends[this.#rows] = this.#length;
    this.#lines[this.#rows++] = line;
    return undefined;
  }

  /**
   * The batch so far, and the buffer starts over. The batch stays valid until the next call but
   * one: callers write one batch at a time, and large fresh allocations per batch made V8 run full
   * collections for the external memory.
   */
  take(): CopyBatch {
    const out = new CopyBatch(this.#buf.subarray(0, this.#length), this.#rows, this.#ends, this.#lines);
    [this.#buf, this.#spare] = [this.#spare, this.#buf];
    [this.#ends, this.#spareEnds] = [this.#spareEnds, this.#ends];
    [this.#lines, this.#spareLines] = [this.#spareLines, this.#lines];
    this.#length = 0;
    this.#rows = 0;
    return out;
  }
}

function grown(numbers: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> {
  const bigger = new Float64Array(numbers.length * 2);
  bigger.set(numbers);
  return bigger;
}
