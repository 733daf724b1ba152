#!/usr/bin/env node
/**
 * open-export: opens a dbfleet subject-export bundle (dbfleet-subject-export/1, docs/export-format.md)
 * into plain JSON files, with nothing but Node (18 or later) and a key. One file using only Node's own
 * modules on purpose: it can be handed to the person the data is about, with the link and the key.
 *
 *   The person, with the export's own key (`dbfleet exports key <export-id>` prints it and the name):
 *     DBFLEET_EXPORT_KEY='<base64 key>' node open-export.mjs --bundle bundle --name <name> --out <new folder>
 *
 *   An operator, with the master key and the key.json stored beside the bundle:
 *     DBFLEET_BACKUP_KEYS='<id>:<base64 key>' node open-export.mjs --bundle bundle --key-file key.json --out <new folder>
 *
 * Every sealed chunk is authenticated before its bytes are used, a cut bundle is refused, and each
 * file is checked against the manifest (size and SHA-256). The files are written to a folder beside
 * --out and renamed into place only when all of them checked out. Keys come only from the
 * environment, never from the command line (where other users of the machine could read them).
 * Exit status: 0 opened, 1 refused or unreadable, 2 wrong usage.
 */
import { Buffer } from 'node:buffer';
import { createDecipheriv, createHash, hkdfSync, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';

const MANIFEST_FORMAT = 'dbfleet-subject-export/1';
const KEY_FILE_FORMAT = 'dbfleet-subject-export-key/1';
const USAGE = `usage: DBFLEET_EXPORT_KEY='<base64 key>' node open-export.mjs --bundle <file> --name <name> --out <folder>
   or: DBFLEET_BACKUP_KEYS='<id>:<base64 key>,...' node open-export.mjs --bundle <file> --key-file <key.json> --out <folder>`;

class Refused extends Error {}
class UsageError extends Error {}

// ---- the key ----

function masterKeys(text) {
  const keys = new Map();
  for (const entry of text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)) {
    const colon = entry.indexOf(':');
    const key = Buffer.from(entry.slice(colon + 1), 'base64');
    if (colon < 1 || key.length !== 32)
      throw new UsageError('DBFLEET_BACKUP_KEYS: each entry must be <id>:<32 bytes, base64>');
    keys.set(entry.slice(0, colon), key);
  }
  return keys;
}

/** AES-256-GCM: IV 12 | ciphertext | tag 16, the master key's id as associated data. */
function unwrap(dataKey, keys) {
  const master = keys.get(dataKey.keyId);
  if (!master)
    throw new Refused(
      `the data key is wrapped by master key ${dataKey.keyId}, which DBFLEET_BACKUP_KEYS does not hold`,
    );
  const raw = Buffer.from(dataKey.wrapped, 'base64');
  try {
    const d = createDecipheriv('aes-256-gcm', master, raw.subarray(0, 12));
    d.setAAD(Buffer.from(dataKey.keyId));
    d.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]);
  } catch {
    throw new Refused(`the data key does not open with master key ${dataKey.keyId}`);
  }
}

// ---- the sealed stream: header (DBF1, version 1, chunk size, nonce prefix), then sealed chunks ----

async function* openSealed(file, key) {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    const header = Buffer.alloc(16);
    if (size < 16 + 16 || (await handle.read(header, 0, 16, 0)).bytesRead !== 16)
      throw new Refused('the bundle is cut');
    if (header.subarray(0, 4).toString('latin1') !== 'DBF1' || header[4] !== 1)
      throw new Refused('not a sealed dbfleet bundle (version 1)');
    const chunk = header.readUInt32BE(5);
    const prefix = header.subarray(9, 16);
    const sealed = chunk + 16;
    const count = Math.max(1, Math.ceil((size - 16) / sealed));
    for (let i = 0, at = 16; i < count; i++, at += sealed) {
      const len = Math.min(sealed, size - at);
      const buf = Buffer.alloc(len);
      await handle.read(buf, 0, len, at);
      const nonce = Buffer.alloc(12);
      prefix.copy(nonce, 0);
      nonce.writeUInt32BE(i, 7);
      nonce[11] = i === count - 1 ? 1 : 0;
      try {
        const d = createDecipheriv('aes-256-gcm', key, nonce);
        d.setAAD(header);
        d.setAuthTag(buf.subarray(len - 16));
        yield Buffer.concat([d.update(buf.subarray(0, len - 16)), d.final()]);
      } catch {
        throw new Refused(
          `chunk ${i} does not authenticate: the bundle was changed or cut, or the key or name is wrong`,
        );
      }
    }
  } finally {
    await handle.close();
  }
}

// ---- the tar: 512-byte ustar headers, files padded to 512 bytes, two zero blocks at the end ----

async function* tarEntries(source) {
  let pending = Buffer.alloc(0);
  const it = source[Symbol.asyncIterator]();
  const take = async (n) => {
    while (pending.length < n) {
      const { value, done } = await it.next();
      if (done) throw new Refused('the bundle ends inside its archive');
      pending = Buffer.concat([pending, value]);
    }
    const out = pending.subarray(0, n);
    pending = pending.subarray(n);
    return out;
  };
  for (;;) {
    const h = await take(512);
    if (h.every((b) => b === 0)) return;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i];
    if (parseInt(h.subarray(148, 156).toString('latin1'), 8) !== sum)
      throw new Refused('a damaged archive header');
    const text = (from, len) =>
      h
        .subarray(from, from + len)
        .toString('utf8')
        .split('\0')[0];
    const size = parseInt(text(124, 12).trim(), 8);
    const body = await take(size);
    await take((512 - (size % 512)) % 512);
    yield { name: text(0, 100), body: Buffer.from(body) };
  }
}

// ---- the whole ----

async function main() {
  const { values: o } = parseArgs({
    options: {
      bundle: { type: 'string' },
      name: { type: 'string' },
      'key-file': { type: 'string' },
      out: { type: 'string' },
    },
  });
  if (!o.bundle || !o.out || !o.name === !o['key-file']) throw new UsageError(USAGE);
  let key;
  let name = o.name;
  let expected;
  if (o['key-file']) {
    const k = JSON.parse(await readFile(o['key-file'], 'utf8'));
    if (k.format !== KEY_FILE_FORMAT) throw new Refused(`${o['key-file']} is not a ${KEY_FILE_FORMAT}`);
    key = unwrap(k.dataKey, masterKeys(process.env.DBFLEET_BACKUP_KEYS ?? ''));
    name = k.object.name;
    expected = k;
    const stored = await readFile(o.bundle);
    if (
      stored.length !== k.object.storedBytes ||
      createHash('sha256').update(stored).digest('hex') !== k.object.sha256
    )
      throw new Refused('the bundle is not the one key.json describes (size or SHA-256)');
  } else {
    key = Buffer.from(process.env.DBFLEET_EXPORT_KEY ?? '', 'base64');
    if (key.length !== 32)
      throw new UsageError('DBFLEET_EXPORT_KEY must hold the export key: 32 bytes, base64');
  }
  const objectKey = Buffer.from(
    hkdfSync('sha256', key, Buffer.alloc(0), `dbfleet backup object ${name}`, 32),
  );

  const target = path.resolve(o.out);
  if ((await readdir(target).catch(() => [])).length) throw new UsageError(`${target} is not empty`);
  const staging = `${target}.partial-${randomBytes(4).toString('hex')}`;
  try {
    const plain = zlib.createGunzip();
    pipeline(Readable.from(openSealed(o.bundle, objectKey)), plain).catch((err) => plain.destroy(err));
    let manifest;
    let next = 0;
    for await (const { name: file, body } of tarEntries(plain)) {
      if (!manifest) {
        if (file !== 'manifest.json') throw new Refused('the bundle does not start with its manifest');
        manifest = JSON.parse(body.toString('utf8'));
        if (manifest.format !== MANIFEST_FORMAT) throw new Refused(`the manifest is not ${MANIFEST_FORMAT}`);
        if (expected && (manifest.exportId !== expected.exportId || manifest.tenant !== expected.tenant))
          throw new Refused('the manifest names another export');
        await mkdir(staging, { recursive: true });
        await writeFile(path.join(staging, file), body);
        continue;
      }
      const f = manifest.files[next++];
      if (!f || f.path !== file || !/^(postgres|mongo)\/[A-Za-z_][A-Za-z0-9_]{0,62}\.json$/.test(file))
        throw new Refused(`the bundle holds ${JSON.stringify(file)}, which its manifest does not list there`);
      if (body.length !== f.bytes || createHash('sha256').update(body).digest('hex') !== f.sha256)
        throw new Refused(`${file} is not the file the manifest describes`);
      await mkdir(path.join(staging, path.dirname(file)), { recursive: true });
      await writeFile(path.join(staging, file), body);
    }
    if (!manifest || next !== manifest.files.length)
      throw new Refused('the bundle lacks files its manifest lists');
    await rmdir(target).catch(() => undefined);
    await rename(staging, target);
    process.stdout.write(
      JSON.stringify(
        {
          exportId: manifest.exportId,
          out: target,
          files: manifest.files.map((f) => ({ path: f.path, records: f.records })),
        },
        null,
        2,
      ) + '\n',
    );
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    if (err && err.code && String(err.code).startsWith('Z_'))
      throw new Refused('the bundle does not decompress');
    throw err;
  }
}

main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(
    `open-export: refused: ${err instanceof Refused ? err.message : (err?.message ?? err)}\n`,
  );
  process.exit(1);
});
