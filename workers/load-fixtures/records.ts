/**
 * Turns a byte stream into numbered records, a chunk of them at a time, so memory stays flat at any
 * file size and the hot loop does not pay an await per row. A record that cannot even be parsed is
 * yielded as an error with its number, never dropped.
 */
import type { Readable } from 'node:stream';
import { BSON } from 'mongodb';
import { parse as parseCsv } from 'csv-parse';
import { streamArray } from 'stream-json/streamers/stream-array.js';

export type Format = 'ndjson' | 'ejson' | 'json' | 'csv';

const { EJSON } = BSON;

export type SourceRecord = { line: number; value: unknown } | { line: number; error: string };

/** Records per chunk for sources that produce them one at a time (JSON arrays, CSV). */
const CHUNK = 1_000;

/**
 * Lines of a UTF-8 stream, a read's worth at a time. `for await` over the stream pulls a chunk only
 * when the previous one is consumed, so a slow database holds the file back instead of buffering it
 * in memory (readline's async iterator does not), and it is faster than readline too.
 */
export async function* lineChunks(input: Readable): AsyncGenerator<string[]> {
  input.setEncoding('utf8');
  let rest = '';
  for await (const chunk of input as AsyncIterable<string>) {
    const text = rest + chunk;
    const out: string[] = [];
    let start = 0;
    for (let end = text.indexOf('\n'); end !== -1; end = text.indexOf('\n', start)) {
      out.push(text.charCodeAt(end - 1) === 13 ? text.slice(start, end - 1) : text.slice(start, end));
      start = end + 1;
    }
    rest = text.slice(start);
    if (out.length) yield out;
  }
  if (rest !== '') yield [rest];
}

/**
 * One record per line. `ejson`: canonical Extended JSON (what cleanup archives of collections hold),
 * so dates, ObjectIds and 64-bit integers load as what they were.
 */
export async function* ndjsonRecords(input: Readable, extended = false): AsyncGenerator<SourceRecord[]> {
  const parse = extended ? (text: string): unknown => EJSON.parse(text, { relaxed: false }) : JSON.parse;
  let line = 0;
  for await (const texts of lineChunks(input)) {
    const records: SourceRecord[] = [];
    for (const text of texts) {
      line++;
      if (text.trim() === '') continue;
      try {
        records.push({ line, value: parse(text) });
      } catch (err) {
        records.push({ line, error: jsonParseReason(err) });
      }
    }
    yield records;
  }
}

/**
 * Why a line is not JSON, without V8's message: it quotes the text around the fault ("Unexpected
 * token 'a', "alice@..." is not valid JSON"), which may be personal data. The position is kept.
 */
export function jsonParseReason(err: unknown): string {
  const at = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  return at ? `not valid JSON (at character ${Number(at[1]) + 1})` : 'not valid JSON';
}

/** csv-parse's messages quote field values; its error codes and column names do not. */
export function csvReason(code: string | undefined, column?: unknown): string {
  const kind = code ? code.replace(/^CSV_/, '').toLowerCase().replaceAll('_', ' ') : 'unreadable';
  return `malformed CSV (${kind}${typeof column === 'string' ? ` in column ${column}` : ''})`;
}

/** Groups one-at-a-time records into chunks. */
async function* chunked(records: AsyncIterable<SourceRecord>): AsyncGenerator<SourceRecord[]> {
  let chunk: SourceRecord[] = [];
  for await (const record of records) {
    chunk.push(record);
    if (chunk.length >= CHUNK) {
      yield chunk;
      chunk = [];
    }
  }
  if (chunk.length) yield chunk;
}

/** A top-level JSON array; records are numbered by element (1-based). */
async function* jsonArrayElements(input: Readable): AsyncGenerator<SourceRecord> {
  const elements = streamArray.withParserAsStream();
  input.on('error', (err) => elements.destroy(err));
  for await (const { key, value } of input.pipe(elements) as AsyncIterable<{ key: number; value: unknown }>) {
    yield { line: key + 1, value };
  }
}

/** CSV with a header row; values stay strings (the fixture schema coerces them). Numbered by line. */
async function* csvRows(input: Readable): AsyncGenerator<SourceRecord> {
  const skipped: SourceRecord[] = [];
  const parser = parseCsv({
    columns: true,
    skip_empty_lines: true,
    skip_records_with_error: true,
    info: true,
    bom: true,
  });
  let lastSkipped = -1;
  parser.on('skip', (err: Error & { lines?: number; code?: string; column?: unknown }) => {
    const line = err.lines ?? 0;
    // One malformed line may raise several errors (each stray quote): it is one rejected record.
    if (line === lastSkipped) return;
    lastSkipped = line;
    skipped.push({ line, error: csvReason(err.code, err.column) });
  });
  input.on('error', (err) => parser.destroy(err));
  for await (const { record, info } of input.pipe(parser) as AsyncIterable<{
    record: unknown;
    info: { lines: number };
  }>) {
    while (skipped.length) yield skipped.shift()!;
    yield { line: info.lines, value: record };
  }
  while (skipped.length) yield skipped.shift()!;
}

export function recordsOf(format: Format, input: Readable): AsyncGenerator<SourceRecord[]> {
  switch (format) {
    case 'ndjson':
      return ndjsonRecords(input);
    case 'ejson':
      return ndjsonRecords(input, true);
    case 'json':
      return chunked(jsonArrayElements(input));
    case 'csv':
      return chunked(csvRows(input));
  }
}

export function formatFromName(name: string): Format | undefined {
  if (/\.(ndjson|jsonl)(\.gz)?$/i.test(name)) return 'ndjson';
  if (/\.ejson(\.gz)?$/i.test(name)) return 'ejson';
  if (/\.json(\.gz)?$/i.test(name)) return 'json';
  if (/\.csv(\.gz)?$/i.test(name)) return 'csv';
  return undefined;
}
