import { describe, expect, test } from 'vitest';
import { CopyTextBuffer, nulRefusal } from '../../src/stores/copy-text.ts';

describe('rows PostgreSQL cannot store', () => {
  const columns = ['id', 'name', 'meta'];

  test('a NUL in text, in a JSON value or in a JSON key is refused, naming the column', () => {
    expect(nulRefusal({ id: 1, name: 'a\0b' }, columns)).toBe(
      'name: contains a NUL character, which PostgreSQL text cannot hold',
    );
    expect(nulRefusal({ id: 1, meta: { tags: ['x', 'y\0'] } }, columns)).toMatch(/^meta: /);
    expect(nulRefusal({ id: 1, meta: { 'k\0': 1 } }, columns)).toMatch(/^meta: /);
  });

  test('text that only spells \\u0000, dates and plain values are stored', () => {
    const buffer = new CopyTextBuffer();
    const row = { id: 1, name: 'literally \\u0000', meta: { at: new Date(0), n: null } };
    expect(nulRefusal(row, columns)).toBeUndefined();
    expect(buffer.appendRow(row, columns, 1)).toBeUndefined();
    expect(buffer.take().bytes.toString()).toBe(
      '1\tliterally \\\\u0000\t{"at":"1970-01-01T00:00:00.000Z","n":null}\n',
    );
  });

  test('appendRow appends nothing for a refused row', () => {
    const buffer = new CopyTextBuffer();
    expect(buffer.appendRow({ id: 1, name: 'ok' }, columns, 1)).toBeUndefined();
    expect(buffer.appendRow({ id: 2, name: 'bad\0' }, columns, 2)).toMatch(/^name: /);
    const batch = buffer.take();
    expect(batch.bytes.toString()).toBe('1\tok\t\\N\n');
    expect(batch.rows).toBe(1);
  });
});

describe('CopyBatch', () => {
  test('any range of rows is a view of the batch, each row with its source line', () => {
    const buffer = new CopyTextBuffer();
    // Enough rows to grow the per-row arrays past their first size; multi-byte text shifts offsets.
    for (let i = 0; i < 3000; i++)
      buffer.appendRow({ id: i, name: i % 7 ? `n${i}` : 'é\t€' }, ['id', 'name'], 10 + i);
    const batch = buffer.take();
    expect(batch.rows).toBe(3000);
    const line = (i: number) => `${i}\t${i % 7 ? `n${i}` : 'é\\t€'}\n`;
    expect(batch.slice(0, 3000)).toEqual(batch.bytes);
    expect(batch.slice(0, 1).toString()).toBe(line(0));
    expect(batch.slice(7, 9).toString()).toBe(line(7) + line(8));
    expect(batch.slice(2999, 3000).toString()).toBe(line(2999));
    expect(batch.slice(1500, 1501).buffer).toBe(batch.bytes.buffer);
    expect([batch.line(0), batch.line(1500), batch.line(2999)]).toEqual([10, 1510, 3009]);
  });

  test('a batch stays valid while the next one is built', () => {
    const buffer = new CopyTextBuffer();
    buffer.appendRow({ id: 1 }, ['id'], 1);
    const first = buffer.take();
    buffer.appendRow({ id: 2 }, ['id'], 2);
    buffer.appendRow({ id: 3 }, ['id'], 3);
    expect(first.slice(0, 1).toString()).toBe('1\n');
    expect(first.line(0)).toBe(1);
    const second = buffer.take();
    expect(second.slice(1, 2).toString()).toBe('3\n');
    expect(second.line(1)).toBe(3);
  });
});
