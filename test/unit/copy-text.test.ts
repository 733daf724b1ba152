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
    expect(buffer.appendRow(row, columns)).toBeUndefined();
    expect(buffer.take().toString()).toBe(
      '1\tliterally \\\\u0000\t{"at":"1970-01-01T00:00:00.000Z","n":null}\n',
    );
  });

  test('appendRow appends nothing for a refused row', () => {
    const buffer = new CopyTextBuffer();
    expect(buffer.appendRow({ id: 1, name: 'ok' }, columns)).toBeUndefined();
    expect(buffer.appendRow({ id: 2, name: 'bad\0' }, columns)).toMatch(/^name: /);
    expect(buffer.take().toString()).toBe('1\tok\t\\N\n');
  });
});
