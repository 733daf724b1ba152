/** The bundle's tar: what it writes, `tar` itself reads; what `tar` writes, it reads; damage is refused. */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { readTar, tarStream, TarError, type TarEntry } from '../../src/erase/tar.ts';

const entry = (name: string, body: Buffer): TarEntry => ({
  name,
  size: body.length,
  open: () => Readable.from([body.subarray(0, 3), body.subarray(3)]),
});

async function collect(source: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of source) parts.push(c);
  return Buffer.concat(parts);
}

async function read(tar: Buffer, chunk = 700): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  const chunks = Array.from({ length: Math.ceil(tar.length / chunk) }, (_, i) =>
    tar.subarray(i * chunk, (i + 1) * chunk),
  );
  await readTar(Readable.from(chunks), async ({ name }) => {
    const parts: Buffer[] = [];
    return {
      write: async (b) => void parts.push(Buffer.from(b)),
      end: async () => void (files[name] = Buffer.concat(parts).toString('utf8')),
    };
  });
  return files;
}

describe('export bundle tar', () => {
  const files = {
    'manifest.json': Buffer.from('{"a":1}\n'),
    'postgres/users.json': Buffer.from('[\n{"id":9007199254740993,"name":"Zoë"}\n]\n'),
    'mongo/empty.json': Buffer.alloc(0),
    'mongo/exact.json': Buffer.alloc(1024, 'x'),
  };
  const entries = Object.entries(files).map(([n, b]) => entry(n, b));

  test('tar lists and extracts it byte for byte', async () => {
    const tar = await collect(tarStream(entries, new Date('2026-12-01T00:00:00Z')));
    expect(tar.length % 512).toBe(0);
    const dir = await mkdtemp(path.join(tmpdir(), 'tar-test-'));
    try {
      await writeFile(path.join(dir, 'b.tar'), tar);
      const listed = execFileSync('tar', ['-tvf', path.join(dir, 'b.tar')], { encoding: 'utf8' });
      expect(listed).toContain('2026-12-01');
      await mkdir(path.join(dir, 'out'));
      execFileSync('tar', ['-xf', path.join(dir, 'b.tar'), '-C', path.join(dir, 'out')]);
      for (const [name, body] of Object.entries(files))
        expect(await readFile(path.join(dir, 'out', name))).toEqual(body);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('reads back what it wrote, in any chunking, and what tar wrote', async () => {
    const tar = await collect(tarStream(entries, new Date()));
    const expected = Object.fromEntries(Object.entries(files).map(([n, b]) => [n, b.toString('utf8')]));
    for (const chunk of [1, 511, 512, 513, 4096]) expect(await read(tar, chunk)).toEqual(expected);

    const dir = await mkdtemp(path.join(tmpdir(), 'tar-test-'));
    try {
      for (const [name, body] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(dir, 'in', name)), { recursive: true });
        await writeFile(path.join(dir, 'in', name), body);
      }
      const gnu = execFileSync('tar', [
        '--format=ustar',
        '-cf',
        '-',
        '-C',
        path.join(dir, 'in'),
        ...Object.keys(files),
      ]);
      expect(await read(gnu)).toEqual(expected);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a body of another length than its header says fails the writer', async () => {
    const lying: TarEntry = { name: 'x.json', size: 10, open: () => Readable.from([Buffer.from('12345')]) };
    await expect(collect(tarStream([lying], new Date()))).rejects.toThrow(/has 5 bytes, not 10/);
  });

  test('a damaged header, a cut archive and trailing data are refused', async () => {
    const tar = await collect(tarStream(entries, new Date()));
    const flipped = Buffer.from(tar);
    flipped[3] = flipped[3]! ^ 1;
    await expect(read(flipped)).rejects.toThrow(/checksum does not match/);
    await expect(read(tar.subarray(0, tar.length - 1024))).rejects.toThrow(TarError);
    await expect(read(tar.subarray(0, 700))).rejects.toThrow(/ends before its end/);
    await expect(read(Buffer.concat([tar, Buffer.from('junk')]))).rejects.toThrow(/after the end/);
  });
});
