#!/usr/bin/env node
/**
 * decode-backup: turns a dbfleet backup (format dbfleet-backup/1, docs/backup-format.md) back into
 * plain files that psql and mongorestore load, with nothing but the master key and Node. It is one
 * file using only Node's own modules on purpose: it must keep working for someone who has left
 * dbfleet, without the repository, npm or a network.
 *
 *   DBFLEET_BACKUP_KEYS='id:base64key' node decode-backup.mjs --from <backup folder> --out <new folder>
 *
 * Needs Node ≥ 22.15 (or ≥ 23.8) for zstd-compressed backups, the default: node:zlib has zstd from
 * there on, and this says so when it is missing. gzip-compressed ones also decode on older Node (20 tried).
 * Everything is checked before anything is written: the manifest's seal, then every object's size
 * and SHA-256; while decoding, every sealed chunk is authenticated before its bytes are used, a cut
 * stream is refused, and each object's plain size and record count must match the manifest. The
 * output is built in a folder beside `--out` and renamed into place only when all of it decoded:
 * a backup that does not check out leaves no plain output at all.
 *
 * Errors name the fault and the object, never key material or the data's contents. Exit status: 0
 * decoded, 1 the backup was refused or could not be read, 2 wrong usage.
 */
import { Buffer } from 'node:buffer';
import {
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';
import { PassThrough, Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import zlib from 'node:zlib';

const FORMAT = 'dbfleet-backup/1';
const USAGE = `usage: DBFLEET_BACKUP_KEYS='<id>:<base64 key>,...' node decode-backup.mjs --from <folder> --out <folder> [options]

  --from <folder>     the backup's folder (the one holding manifest.json), or the root of a copy of
                      the store (a local storage folder, a bucket copied down) with --tenant and --backup
  --out <folder>      where the plain files go; must not exist, or be empty
  --tenant <id>       the tenant the backup must be of (checked against the manifest)
  --backup <id>       the backup id it must have (checked against the manifest)
  --schema <name>     the PostgreSQL schema the SQL creates (default t_<tenant>, the tenant's own)
  --database <name>   the MongoDB database folder mongorestore restores into (default t_<tenant>)
  --allow-unsealed    decode a backup made without a key (encrypt: false): its SHA-256 seal shows
                      damage, but anyone could have written it
  --verify-only       check the whole backup, write nothing

Master keys come only from the environment variable DBFLEET_BACKUP_KEYS, never from the command line.`;

/** A backup that does not check out; `fault` is the kind, as dbfleet's own reader names it. */
class Refused extends Error {
  constructor(fault, message) {
    super(message);
    this.fault = fault;
  }
}

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------
// Master keys and the manifest

const KEY_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** DBFLEET_BACKUP_KEYS: `id:base64` pairs, comma-separated. A bad entry is named by position or id, never quoted. */
function parseMasterKeys(text) {
  const keys = new Map();
  const entries = text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  entries.forEach((entry, i) => {
    const colon = entry.indexOf(':');
    const id = entry.slice(0, colon);
    const key = Buffer.from(entry.slice(colon + 1), 'base64');
    if (colon < 1 || !KEY_ID.test(id))
      throw new UsageError(
        `DBFLEET_BACKUP_KEYS entry ${i + 1}: must be <id>:<base64 key>, the id [A-Za-z0-9._-]`,
      );
    if (key.length !== 32) throw new UsageError(`DBFLEET_BACKUP_KEYS key ${id}: must be 32 bytes, base64`);
    if (keys.has(id)) throw new UsageError(`DBFLEET_BACKUP_KEYS key ${id}: given twice`);
    keys.set(id, key);
  });
  return keys;
}

/**
 * The text the manifest's seal covers: JSON with object keys sorted (by UTF-16 code units, as
 * JavaScript sorts), no whitespace, strings and numbers as JSON.stringify writes them.
 */
function canonicalJson(value) {
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  const fields = Object.keys(value)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`);
  return `{${fields.join(',')}}`;
}

const HEX64 = /^[0-9a-f]{64}$/;
const KINDS = ['table', 'collection', 'postgres-schema', 'mongo-shapes'];
const COMPRESSIONS = ['zstd', 'gzip', 'none'];

/** Checks that `value` is an object with exactly these fields, each passing its test. */
function shape(value, fields, where) {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new Refused('manifest_unreadable', `${where} is not an object`);
  for (const k of Object.keys(value))
    if (!Object.hasOwn(fields, k))
      throw new Refused('manifest_unreadable', `${where} has a field ${FORMAT} does not define: ${k}`);
  for (const [k, test] of Object.entries(fields))
    if (!Object.hasOwn(value, k) || !test(value[k]))
      throw new Refused('manifest_unreadable', `${where}.${k} is missing or not what ${FORMAT} says`);
}

const isString = (v) => typeof v === 'string';
const isNonEmpty = (v) => typeof v === 'string' && v.length > 0;
const isNullableString = (v) => v === null || typeof v === 'string';
const isCount = (v) => Number.isSafeInteger(v) && v >= 0;

/** Parses and checks the manifest's shape (as strictly as dbfleet does); refuses other versions first. */
function parseManifest(text) {
  let m;
  try {
    m = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text; say only that it is not JSON.
    throw new Refused('manifest_unreadable', 'manifest.json is not JSON');
  }
  if (m === null || typeof m !== 'object')
    throw new Refused('manifest_unreadable', 'manifest.json is not an object');
  if (m.format !== FORMAT)
    throw new Refused(
      'unsupported_format',
      `the manifest's format is ${JSON.stringify(String(m.format)).slice(0, 80)}; this reader knows only ${FORMAT}`,
    );
  shape(
    m,
    {
      format: isString,
      tenant: isNonEmpty,
      backupId: isNonEmpty,
      runId: isNonEmpty,
      startedAt: isString,
      finishedAt: isString,
      migrations: (v) => v !== null && typeof v === 'object',
      positions: (v) => v !== null && typeof v === 'object',
      key: (v) => v === null || typeof v === 'object',
      objects: Array.isArray,
      seal: (v) => v !== null && typeof v === 'object',
    },
    'the manifest',
  );
  shape(m.migrations, { postgres: isNullableString, mongo: isNullableString }, 'the manifest.migrations');
  shape(
    m.positions,
    { postgresLsn: isNullableString, mongoClusterTime: isNullableString },
    'the manifest.positions',
  );
  if (m.key !== null) shape(m.key, { keyId: isString, wrapped: isString }, 'the manifest.key');
  shape(
    m.seal,
    {
      kind: (v) => v === 'hmac-sha256' || v === 'sha256',
      value: (v) => typeof v === 'string' && HEX64.test(v),
    },
    'the manifest.seal',
  );
  m.objects.forEach((o, i) =>
    shape(
      o,
      {
        key: isNonEmpty,
        name: isNonEmpty,
        kind: (v) => KINDS.includes(v),
        compression: (v) => COMPRESSIONS.includes(v),
        sealed: (v) => typeof v === 'boolean',
        records: isCount,
        plainBytes: isCount,
        storedBytes: isCount,
        sha256: (v) => typeof v === 'string' && HEX64.test(v),
      },
      `the manifest.objects[${i}]`,
    ),
  );
  return m;
}

/** Unwraps the data key: AES-256-GCM, IV 12 | ciphertext | tag 16, the key id as associated data. */
function unwrapDataKey(key, masterKeys) {
  const master = masterKeys.get(key.keyId);
  if (!master)
    throw new Refused(
      'unknown_key',
      `the backup's data key is wrapped by master key ${key.keyId}, which DBFLEET_BACKUP_KEYS does not hold`,
    );
  const raw = Buffer.from(key.wrapped, 'base64');
  try {
    if (raw.length !== 12 + 32 + 16) throw new Error('size');
    const decipher = createDecipheriv('aes-256-gcm', master, raw.subarray(0, 12));
    decipher.setAAD(Buffer.from(key.keyId));
    decipher.setAuthTag(raw.subarray(raw.length - 16));
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
  } catch {
    throw new Refused(
      'wrong_key',
      `the data key does not open with master key ${key.keyId}: the key is not the one it was wrapped with, or the manifest was changed`,
    );
  }
}

function hkdf(dataKey, info) {
  return Buffer.from(hkdfSync('sha256', dataKey, Buffer.alloc(0), info, 32));
}

/** Checks the seal; returns the data key (undefined for a backup made without a key). */
function openManifest(m, masterKeys, allowUnsealed) {
  const { seal, ...body } = m;
  let dataKey;
  if (m.key) {
    if (!masterKeys)
      throw new Refused(
        'unknown_key',
        `the backup is sealed with master key ${m.key.keyId}: set DBFLEET_BACKUP_KEYS to a list holding it`,
      );
    dataKey = unwrapDataKey(m.key, masterKeys);
  } else if (!allowUnsealed)
    throw new Refused(
      'unsealed',
      'the backup was made without a key: anyone could have written it. If you made it so (encrypt: false), decode it with --allow-unsealed',
    );
  const text = canonicalJson(body);
  const expected = dataKey
    ? {
        kind: 'hmac-sha256',
        value: createHmac('sha256', hkdf(dataKey, 'dbfleet backup manifest')).update(text).digest(),
      }
    : { kind: 'sha256', value: createHash('sha256').update(text).digest() };
  if (seal.kind !== expected.kind || !timingSafeEqual(Buffer.from(seal.value, 'hex'), expected.value))
    throw new Refused(
      'manifest_tampered',
      'the manifest was changed after it was written: its seal does not match',
    );
  return dataKey;
}

// ---------------------------------------------------------------------------------------------
// Objects: where they are, what they hold

/**
 * What each object is, from its name and kind, checked against the layout (layout.ts): the files
 * written below are named from these, so a name that would leave its folder is refused.
 */
/**
 * A table's or collection's name from its object name: one path segment, every byte outside
 * [A-Za-z0-9_-] percent-encoded (layout.ts). The segment, safe as it is, names the output file.
 */
function member(objectName, prefix, kind) {
  const segment = objectName.slice(prefix.length);
  let name;
  try {
    if (!/^[A-Za-z0-9_%-]+$/.test(segment)) throw new Error('not encoded');
    name = decodeURIComponent(segment);
  } catch {
    throw new Refused(
      'manifest_unreadable',
      `object ${JSON.stringify(objectName)}: not a ${kind} name of this format`,
    );
  }
  return { [kind]: name, file: segment };
}

function describeObjects(m) {
  const seen = new Set();
  return m.objects.map((o) => {
    let item;
    if (o.kind === 'postgres-schema' && o.name === 'postgres/schema') item = { ...o };
    else if (o.kind === 'mongo-shapes' && o.name === 'mongo/collections') item = { ...o };
    else if (o.kind === 'table' && o.name.startsWith('postgres/tables/'))
      item = { ...o, ...member(o.name, 'postgres/tables/', 'table') };
    else if (o.kind === 'collection' && o.name.startsWith('mongo/collections/'))
      item = { ...o, ...member(o.name, 'mongo/collections/', 'collection') };
    else
      throw new Refused('manifest_unreadable', `object ${o.key}: kind ${o.kind} does not go with its name`);
    const key = `${o.kind}:${o.name}`;
    if (seen.has(key)) throw new Refused('manifest_unreadable', `object ${o.name} is listed twice`);
    seen.add(key);
    return item;
  });
}

/** The object's file: its manifest key, relative to the manifest's folder, and never outside it. */
function objectPath(from, key) {
  const full = path.resolve(from, key);
  if (key.startsWith('/') || key.includes('\\') || !full.startsWith(path.resolve(from) + path.sep))
    throw new Refused(
      'manifest_unreadable',
      `object key ${JSON.stringify(key)} points outside the backup's folder`,
    );
  return full;
}

async function sha256File(file) {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest('hex');
}

/** Every object is there, with the manifest's size and SHA-256: before anything is decrypted or written. */
async function checkStored(from, objects, log) {
  for (const o of objects) {
    const file = objectPath(from, o.key);
    let size;
    try {
      size = (await stat(file)).size;
    } catch (err) {
      if (err.code === 'ENOENT')
        throw new Refused('object_missing', `backup object ${o.key} is missing from ${from}`);
      throw err;
    }
    if (size !== o.storedBytes)
      throw new Refused(
        'size',
        `backup object ${o.key}: its stored size differs from the manifest's (${size}, not ${o.storedBytes} bytes)`,
      );
    if ((await sha256File(file)) !== o.sha256)
      throw new Refused('checksum', `backup object ${o.key}: its stored SHA-256 differs from the manifest's`);
  }
  log(`checked ${objects.length} objects: all present, sizes and SHA-256 as the manifest says`);
}

// ---------------------------------------------------------------------------------------------
// The sealed stream: header (magic DBF1, version 1, u32 BE chunk size, 7-byte nonce prefix), then
// chunks of `chunkSize` plaintext bytes each followed by its 16-byte tag; the last holds 0 to chunkSize.

const HEADER_BYTES = 16;
const TAG_BYTES = 16;
const MAX_CHUNK_BYTES = 16 * 1024 * 1024;

function nonce(prefix, index, final) {
  const n = Buffer.alloc(12);
  prefix.copy(n, 0);
  n.writeUInt32BE(index, 7);
  n[11] = final ? 1 : 0;
  return n;
}

/** Reads exactly `length` bytes at `position`; a file that ends sooner was cut (or changed under us). */
async function readAt(fh, position, length, label) {
  const buffer = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buffer, got, length - got, position + got);
    if (bytesRead === 0)
      throw new Refused('truncated', `${label}: the file ends sooner than the manifest says`);
    got += bytesRead;
  }
  return buffer;
}

/**
 * The object's stored bytes, as they are read from `file`, also hashed into `hash` (checked again at
 * the end, so a file changed since the first check is caught).
 */
async function* storedBytes(file, size, hash, label) {
  const fh = await open(file, 'r');
  try {
    for (let at = 0; at < size;) {
      const piece = await readAt(fh, at, Math.min(1 << 20, size - at), label);
      hash.update(piece);
      at += piece.length;
      yield piece;
    }
  } finally {
    await fh.close();
  }
}

/**
 * Opens a sealed stream of `size` bytes: yields each chunk's plaintext once its tag checks. A chunk
 * is the last one exactly when the stream ends after it; a stream cut anywhere lacks its final chunk.
 */
async function* openSealed(source, size, key, label) {
  const { read: reader, close } = byteReader(source);
  try {
    yield* openChunks(reader, size, key, label);
  } finally {
    await close();
  }
}

async function* openChunks(reader, size, key, label) {
  if (size < HEADER_BYTES) throw new Refused('truncated', `${label}: the stream ends inside its header`);
  const header = await reader(HEADER_BYTES);
  if (!header.subarray(0, 4).equals(Buffer.from('DBF1')))
    throw new Refused('not_sealed', `${label}: not a sealed dbfleet stream (no DBF1 header)`);
  if (header[4] !== 1)
    throw new Refused('unsupported_version', `${label}: sealed stream version ${header[4]} is not supported`);
  const chunkBytes = header.readUInt32BE(5);
  if (chunkBytes < 1 || chunkBytes > MAX_CHUNK_BYTES)
    throw new Refused('not_sealed', `${label}: the header names an impossible chunk size`);
  const prefix = header.subarray(9, 16);
  const sealedChunk = chunkBytes + TAG_BYTES;
  const body = size - HEADER_BYTES;
  if (body === 0)
    throw new Refused('truncated', `${label}: the stream ends after its header, before its last chunk`);
  const full = Math.floor((body - 1) / sealedChunk);
  if (full >= 2 ** 32)
    throw new Refused('not_sealed', `${label}: more chunks than a sealed stream can number`);
  const open = (sealed, index, final) => {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce(prefix, index, final));
    decipher.setAAD(header);
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  };
  const tampered = (index) =>
    new Refused(
      'tampered',
      `${label}: chunk ${index} does not authenticate: the data was changed, reordered or cut, or the key is wrong`,
    );
  for (let i = 0; i < full; i++) {
    const sealed = await reader(sealedChunk);
    let plain;
    try {
      plain = open(sealed, i, false);
    } catch {
      throw tampered(i);
    }
    yield plain;
  }
  const last = await reader(body - full * sealedChunk);
  if (last.length < TAG_BYTES) throw new Refused('truncated', `${label}: the stream ends inside a chunk`);
  const opens = (final) => {
    try {
      return open(last, full, final);
    } catch {
      return undefined;
    }
  };
  const plain = opens(true);
  if (plain === undefined) {
    // A whole chunk that opens as not-the-last: the stream was cut after it.
    if (last.length === sealedChunk && opens(false) !== undefined)
      throw new Refused('truncated', `${label}: the stream ends after chunk ${full}, before its last chunk`);
    throw tampered(full);
  }
  yield plain;
}

/**
 * Takes exact byte counts from an async iterable of buffers; at its end, returns what is left (maybe
 * less). `close` ends the source early, so its file is closed when a chunk is refused.
 */
function byteReader(source) {
  const it = source[Symbol.asyncIterator]();
  let held = [];
  let heldBytes = 0;
  let done = false;
  const read = async (n) => {
    while (heldBytes < n && !done) {
      const next = await it.next();
      if (next.done) done = true;
      else {
        held.push(next.value);
        heldBytes += next.value.length;
      }
    }
    const all = held.length === 1 ? held[0] : Buffer.concat(held, heldBytes);
    const out = all.subarray(0, Math.min(n, all.length));
    const rest = all.subarray(out.length);
    held = rest.length ? [rest] : [];
    heldBytes = rest.length;
    return out;
  };
  return { read, close: async () => void (await it.return?.()) };
}

function decompressor(compression) {
  if (compression === 'zstd') return zlib.createZstdDecompress();
  if (compression === 'gzip') return zlib.createGunzip();
  return new PassThrough();
}

/** Counts plain bytes and records: COPY text rows (one line each) or BSON documents (length-prefixed). */
function counter(kind) {
  const c = { bytes: 0, records: 0 };
  let skip = 0;
  const head = Buffer.alloc(4);
  let headBytes = 0;
  c.stream = new Transform({
    transform(chunk, _encoding, callback) {
      c.bytes += chunk.length;
      if (kind === 'table')
        for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) c.records++;
      else if (kind === 'collection')
        for (let at = 0; at < chunk.length;) {
          if (skip > 0) {
            const n = Math.min(skip, chunk.length - at);
            skip -= n;
            at += n;
            continue;
          }
          const n = Math.min(4 - headBytes, chunk.length - at);
          chunk.copy(head, headBytes, at, at + n);
          headBytes += n;
          at += n;
          if (headBytes === 4) {
            const size = head.readInt32LE(0);
            if (size < 5) return callback(new Refused('record_count', 'not a BSON document stream'));
            skip = size - 4;
            headBytes = 0;
            c.records++;
          }
        }
      callback(null, chunk);
    },
    flush(callback) {
      callback(
        skip > 0 || headBytes > 0
          ? new Refused('record_count', 'the BSON stream ends inside a document')
          : null,
      );
    },
  });
  return c;
}

/**
 * Decodes one object into `sink` (a writable): stored bytes, authenticated chunks, decompressed.
 * Fails unless its stored SHA-256, plain size and record count are the manifest's.
 */
async function decodeObject(from, o, dataKey, sink) {
  const label = `backup object ${o.key}`;
  if (o.sealed && !dataKey)
    throw new Refused('manifest_unreadable', `${label} is sealed, and the manifest names no data key`);
  if (!o.sealed && dataKey)
    throw new Refused('not_sealed', `${label} is not sealed, in a sealed backup (where every object is)`);
  const hash = createHash('sha256');
  const stored = storedBytes(objectPath(from, o.key), o.storedBytes, hash, label);
  const plainSource = o.sealed
    ? openSealed(stored, o.storedBytes, hkdf(dataKey, `dbfleet backup object ${o.name}`), label)
    : stored;
  const count = counter(o.kind);
  try {
    await pipeline(Readable.from(plainSource), decompressor(o.compression), count.stream, sink);
  } catch (err) {
    if (err instanceof Refused)
      throw new Refused(err.fault, err.message.startsWith(label) ? err.message : `${label}: ${err.message}`);
    if (err && typeof err.code === 'string' && (err.code.startsWith('Z_') || err.code.startsWith('ZSTD_')))
      throw new Refused('decompress', `${label}: does not decompress as ${o.compression}`);
    throw err;
  }
  if (hash.digest('hex') !== o.sha256)
    throw new Refused('checksum', `${label}: its stored SHA-256 differs from the manifest's`);
  if (count.bytes !== o.plainBytes)
    throw new Refused(
      'plain_size',
      `${label}: decodes to ${count.bytes} bytes, the manifest says ${o.plainBytes}`,
    );
  if ((o.kind === 'table' || o.kind === 'collection') && count.records !== o.records)
    throw new Refused(
      'record_count',
      `${label}: holds ${count.records} records, the manifest says ${o.records}`,
    );
}

/** A small JSON object (the schema script, the collections' shapes), decoded whole. */
async function decodeJson(from, o, dataKey) {
  const parts = [];
  const sink = new Transform({
    transform(chunk, _e, callback) {
      parts.push(chunk);
      callback();
    },
  });
  sink.resume();
  await decodeObject(from, o, dataKey, sink);
  try {
    return JSON.parse(Buffer.concat(parts).toString('utf8'));
  } catch {
    throw new Refused('manifest_unreadable', `backup object ${o.key}: not JSON`);
  }
}

/** Writes the object's plain bytes to `file` (in the staging folder). */
async function decodeToFile(from, o, dataKey, file) {
  await mkdir(path.dirname(file), { recursive: true });
  await decodeObject(from, o, dataKey, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
}

// ---------------------------------------------------------------------------------------------
// The plain output: SQL and COPY files for psql, a mongodump folder for mongorestore

const quoteIdent = (name) => `"${name.replace(/"/g, '""')}"`;
const quoteLiteral = (text) => `'${text.replace(/'/g, "''")}'`;

/** mongodump's file name for a collection: Go's url.QueryEscape, long names cut and hashed as it does. */
function dumpFileName(collection) {
  let escaped = encodeURIComponent(collection)
    .replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    .replace(/%20/g, '+');
  if (escaped.length > 238) {
    const hash = createHash('sha1').update(collection).digest('base64url');
    escaped = `${escaped.slice(0, 208)}%24${hash}`;
  }
  return escaped;
}

function checkSchemaScript(script) {
  const ok =
    script &&
    Array.isArray(script.tables) &&
    script.tables.every((t) => t && typeof t.name === 'string' && typeof t.create === 'string') &&
    Array.isArray(script.defaults) &&
    script.defaults.every((d) => typeof d === 'string') &&
    Array.isArray(script.sequences) &&
    script.sequences.every(
      (s) =>
        s &&
        typeof s.name === 'string' &&
        (s.create === null || typeof s.create === 'string') &&
        typeof s.lastValue === 'string' &&
        /^-?\d+$/.test(s.lastValue) &&
        typeof s.isCalled === 'boolean' &&
        (s.ownedBy === null || typeof s.ownedBy === 'string'),
    ) &&
    Array.isArray(script.constraints) &&
    script.constraints.every((c) => typeof c === 'string') &&
    Array.isArray(script.foreignKeys) &&
    script.foreignKeys.every((c) => typeof c === 'string') &&
    Array.isArray(script.indexes) &&
    script.indexes.every((c) => typeof c === 'string');
  if (!ok)
    throw new Refused('manifest_unreadable', 'postgres/schema.json is not a schema script this reader knows');
}

/**
 * The SQL, split where pg_dump splits it (pre-data, data, post-data): tables and sequences first,
 * rows loaded into bare tables, then constraints, indexes and sequence positions, so rows load in
 * any order and are checked once.
 */
function postgresFiles(script, tables, schema, m) {
  const q = quoteIdent(schema);
  const origin = `-- dbfleet backup ${m.backupId} of tenant ${m.tenant}, finished ${m.finishedAt} (${FORMAT}).`;
  const pre = [
    origin,
    '-- Before the data: the schema, its free-standing sequences and its tables.',
    `CREATE SCHEMA ${q};`,
    `SET search_path TO ${q};`,
    ...script.sequences.filter((s) => s.create).map((s) => `${s.create};`),
    ...script.tables.map((t) => `${t.create};`),
    ...script.defaults.map((d) => `${d};`),
    '',
  ];
  const data = [
    origin,
    '-- The rows: COPY text, UTF-8, one file per table, loaded with psql from this folder.',
    "SET client_encoding TO 'UTF8';",
    ...tables.map((t) => `\\copy ${q}.${quoteIdent(t.table)} FROM ${quoteLiteral(`${t.file}.copy`)}`),
    '',
  ];
  const post = [
    origin,
    '-- After the data: keys and checks, indexes, foreign keys, sequence positions.',
    `SET search_path TO ${q};`,
    ...script.constraints.map((c) => `${c};`),
    ...script.indexes.map((i) => `${i};`),
    ...script.foreignKeys.map((f) => `${f};`),
    ...script.sequences.flatMap((s) => [
      ...(s.ownedBy && s.create ? [`ALTER SEQUENCE ${quoteIdent(s.name)} OWNED BY ${s.ownedBy};`] : []),
      `SELECT pg_catalog.setval(${quoteLiteral(`${q}.${quoteIdent(s.name)}`)}, ${s.lastValue}, ${s.isCalled});`,
    ]),
    '',
  ];
  const restore = `#!/bin/sh
# Loads this folder into PostgreSQL with psql (10 or later), in one transaction: schema.sql, the
# rows (data.sql), then constraints.sql. Connection as psql takes it: a URL or PG* variables.
#   sh restore.sh 'postgres://user@host:5432/database'
# PSQL names another psql binary. The schema ${schema} must not exist yet.
set -eu
cd "$(dirname "$0")"
exec "\${PSQL:-psql}" -X -v ON_ERROR_STOP=1 --single-transaction \\
  -f schema.sql -f data.sql -f constraints.sql "$@"
`;
  return {
    'schema.sql': pre.join('\n'),
    'data.sql': data.join('\n'),
    'constraints.sql': post.join('\n'),
    'restore.sh': restore,
  };
}

function checkShapes(shapes) {
  const ok =
    Array.isArray(shapes) &&
    shapes.every(
      (s) =>
        s &&
        typeof s.name === 'string' &&
        s.options !== null &&
        typeof s.options === 'object' &&
        Array.isArray(s.indexes) &&
        s.indexes.every((i) => i && typeof i.name === 'string' && i.key && typeof i.key === 'object'),
    );
  if (!ok)
    throw new Refused(
      'manifest_unreadable',
      'mongo/collections.json is not a list of collections this reader knows',
    );
}

/** mongodump's metadata file: options, indexes (the _id index mongorestore makes itself), the name. */
function metadataJson(shape) {
  return `${JSON.stringify({ options: shape.options, indexes: shape.indexes, collectionName: shape.name, type: 'collection' })}\n`;
}

function readme(m, { schema, database, tables, collections }) {
  const lines = [
    `# dbfleet backup ${m.backupId} of tenant ${m.tenant}, as plain files`,
    '',
    `Finished ${m.finishedAt}; migrations: PostgreSQL ${m.migrations.postgres ?? '-'}, MongoDB ${m.migrations.mongo ?? '-'}.`,
    `Decoded by decode-backup (${FORMAT}); every object was authenticated and counted. backup.json lists what it held.`,
    '',
  ];
  if (tables.length)
    lines.push(
      `## PostgreSQL: ${tables.length} tables into schema ${schema}`,
      '',
      '`postgres/restore.sh` loads it in one transaction with psql (the schema must not exist yet):',
      '',
      "    sh postgres/restore.sh 'postgres://user@host:5432/database'",
      '',
      'The same by hand, from inside `postgres/`: `schema.sql` (schema, sequences, tables), `data.sql` (one',
      "`\\copy ... FROM '<table>.copy'` per table: COPY text, UTF-8), then `constraints.sql` (constraints,",
      'indexes, sequence positions). Each `<table>.copy` also loads on its own with',
      "`\\copy <table> FROM '<table>.copy'`.",
      '',
    );
  if (collections.length)
    lines.push(
      `## MongoDB: ${collections.length} collections into database ${database}`,
      '',
      '`mongo/` is laid out as mongodump writes it (`<database>/<collection>.bson` and',
      '`.metadata.json` with the options and indexes); mongorestore (100.x) loads it:',
      '',
      "    mongorestore --uri 'mongodb://host:27017' --dir mongo",
      '',
      `Into another database: add \`--nsFrom '${database}.*' --nsTo '<database>.*'\`. \`bsondump\` prints a`,
      '`.bson` file as JSON.',
      '',
    );
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------

function parseCommandLine(argv) {
  // Keys on the command line end up in shell history and `ps`: refuse them without echoing them.
  if (argv.some((a) => /^--?(master-?)?keys?(=|$)|^--data-key/i.test(a)))
    throw new UsageError(
      'master keys are read from the environment variable DBFLEET_BACKUP_KEYS only, never from the command line',
    );
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        from: { type: 'string' },
        out: { type: 'string' },
        tenant: { type: 'string' },
        backup: { type: 'string' },
        schema: { type: 'string' },
        database: { type: 'string' },
        'allow-unsealed': { type: 'boolean', default: false },
        'verify-only': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (err) {
    throw new UsageError(err.message);
  }
  const o = parsed.values;
  if (o.help) return { help: true };
  if (!o.from) throw new UsageError('--from is required');
  if (!o.out && !o['verify-only']) throw new UsageError('--out is required (or --verify-only)');
  if (
    o.schema !== undefined &&
    (o.schema.length === 0 || Buffer.byteLength(o.schema) > 63 || o.schema.includes('\0'))
  )
    throw new UsageError('--schema: a PostgreSQL name of 1 to 63 bytes');
  if (o.database !== undefined && !/^[^/\\. "$*<>:|?\0]{1,63}$/.test(o.database))
    throw new UsageError(
      '--database: a MongoDB database name (no / \\ . space " $ * < > : | ?), at most 63 characters',
    );
  return o;
}

/** The backup's folder: `--from` itself, or under a store root copy at backups/<tenant>/<backup>. */
async function backupFolder(o) {
  const has = async (dir) =>
    (await stat(path.join(dir, 'manifest.json')).catch(() => null))?.isFile() === true;
  if (await has(o.from)) return path.resolve(o.from);
  if (o.tenant && o.backup) {
    const nested = path.join(o.from, 'backups', o.tenant, o.backup);
    if (await has(nested)) return path.resolve(nested);
  }
  throw new Refused(
    'manifest_missing',
    `no manifest.json in ${o.from}${o.tenant && o.backup ? ' nor under backups/<tenant>/<backup> there' : ''}: not a backup folder, or the backup never finished (the manifest is written last)`,
  );
}

async function prepareOut(out) {
  const entries = await readdir(out).catch((err) => {
    if (err.code === 'ENOENT') return null;
    throw err;
  });
  if (entries && entries.length > 0)
    throw new UsageError(`--out ${out} exists and is not empty: give a new folder`);
  await mkdir(path.dirname(path.resolve(out)), { recursive: true });
  return entries !== null;
}

async function main() {
  const o = parseCommandLine(process.argv.slice(2));
  if (o.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const log = (line) => process.stderr.write(`decode-backup: ${line}\n`);
  // Wrong usage fails before anything is read.
  const outExisted = o['verify-only'] ? false : await prepareOut(o.out);
  const envKeys = process.env.DBFLEET_BACKUP_KEYS;
  const masterKeys = envKeys && envKeys.trim() ? parseMasterKeys(envKeys) : undefined;

  const from = await backupFolder(o);
  const m = parseManifest(await readFile(path.join(from, 'manifest.json'), 'utf8'));
  if (o.backup !== undefined && m.backupId !== o.backup)
    throw new Refused('wrong_backup', `the manifest in ${from} is of backup ${m.backupId}, not ${o.backup}`);
  if (o.tenant !== undefined && m.tenant !== o.tenant)
    throw new Refused('wrong_tenant', `backup ${m.backupId} is of tenant ${m.tenant}, not ${o.tenant}`);
  const dataKey = openManifest(m, masterKeys, o['allow-unsealed']);
  log(
    dataKey
      ? `manifest of backup ${m.backupId} (tenant ${m.tenant}): seal checks, data key unwrapped with master key ${m.key.keyId}`
      : `manifest of backup ${m.backupId} (tenant ${m.tenant}): made without a key; its SHA-256 seal checks (it shows damage, not forgery)`,
  );
  const objects = describeObjects(m);
  if (objects.some((x) => x.compression === 'zstd') && typeof zlib.createZstdDecompress !== 'function')
    throw new Refused(
      'no_zstd',
      `this backup is zstd-compressed, and Node ${process.version} has no zstd in node:zlib (it has from 22.15 and 23.8): run this with Node 22.15 or later`,
    );
  const schemaObject = objects.find((x) => x.kind === 'postgres-schema');
  const shapesObject = objects.find((x) => x.kind === 'mongo-shapes');
  const tables = objects.filter((x) => x.kind === 'table');
  const collections = objects.filter((x) => x.kind === 'collection');
  if (tables.length && !schemaObject)
    throw new Refused('manifest_unreadable', 'the backup holds tables and no postgres/schema object');
  if (collections.length && !shapesObject)
    throw new Refused('manifest_unreadable', 'the backup holds collections and no mongo/collections object');

  await checkStored(from, objects, log);

  const schema = o.schema ?? `t_${m.tenant}`;
  const database = o.database ?? `t_${m.tenant}`;
  let staging;
  if (!o['verify-only']) {
    staging = `${path.resolve(o.out)}.partial-${randomBytes(4).toString('hex')}`;
    await mkdir(staging, { mode: 0o700 });
  }
  const target = (...parts) => (staging ? path.join(staging, ...parts) : '');
  try {
    let script;
    if (schemaObject) {
      script = await decodeJson(from, schemaObject, dataKey);
      checkSchemaScript(script);
      const inScript = new Set(script.tables.map((t) => t.name));
      const missing = tables.filter((t) => !inScript.has(t.table)).map((t) => t.table);
      if (missing.length || inScript.size !== tables.length)
        throw new Refused(
          'manifest_unreadable',
          'the schema script and the manifest do not name the same tables',
        );
    }
    let shapes;
    if (shapesObject) {
      shapes = await decodeJson(from, shapesObject, dataKey);
      checkShapes(shapes);
      const named = new Set(shapes.map((s) => s.name));
      if (collections.some((c) => !named.has(c.collection)) || named.size !== collections.length)
        throw new Refused(
          'manifest_unreadable',
          'the collections file and the manifest do not name the same collections',
        );
    }
    const toFile = (x, file) =>
      o['verify-only'] ? decodeObject(from, x, dataKey, devNull()) : decodeToFile(from, x, dataKey, file);
    for (const t of tables) {
      await toFile(t, target('postgres', `${t.file}.copy`));
      log(`table ${t.table}: ${t.records} rows`);
    }
    const dbDir = target('mongo', database);
    for (const c of collections) {
      await toFile(c, path.join(dbDir, `${dumpFileName(c.collection)}.bson`));
      log(`collection ${c.collection}: ${c.records} documents`);
    }
    if (o['verify-only']) {
      process.stdout.write(
        `backup ${m.backupId} of tenant ${m.tenant} checks out: ${objects.length} objects, ${m.objects.reduce((n, x) => n + x.records, 0)} records\n`,
      );
      return;
    }
    if (script) {
      const files = postgresFiles(script, tables, schema, m);
      await mkdir(target('postgres'), { recursive: true });
      for (const [name, text] of Object.entries(files))
        await writeFile(target('postgres', name), text, { mode: 0o600 });
      await chmod(target('postgres', 'restore.sh'), 0o700);
    }
    if (shapes) {
      await mkdir(dbDir, { recursive: true });
      for (const s of shapes)
        await writeFile(path.join(dbDir, `${dumpFileName(s.name)}.metadata.json`), metadataJson(s), {
          mode: 0o600,
        });
    }
    const { seal: _seal, key, ...described } = m;
    await writeFile(
      target('backup.json'),
      `${JSON.stringify({ ...described, keyId: key?.keyId ?? null }, null, 1)}\n`,
      { mode: 0o600 },
    );
    await writeFile(
      target('README.md'),
      readme(m, {
        schema,
        database,
        tables: tables.map((t) => t.table),
        collections: collections.map((c) => c.collection),
      }),
      { mode: 0o600 },
    );
    // An empty --out given by the user is replaced by the finished folder in one rename.
    if (outExisted) await rmdir(o.out);
    await rename(staging, o.out);
    staging = undefined;
  } finally {
    if (staging) await rm(staging, { recursive: true, force: true });
  }
  process.stdout.write(
    `decoded backup ${m.backupId} of tenant ${m.tenant} into ${o.out}: ${tables.length} tables (schema ${schema}), ` +
      `${collections.length} collections (database ${database}); see ${path.join(o.out, 'README.md')}\n`,
  );
}

function devNull() {
  return new Transform({
    transform(_chunk, _e, callback) {
      callback();
    },
  }).resume();
}

main().catch((err) => {
  if (err instanceof UsageError) {
    process.stderr.write(`decode-backup: ${err.message}\n\n${USAGE}\n`);
    process.exitCode = 2;
  } else if (err instanceof Refused) {
    process.stderr.write(`decode-backup: refused (${err.fault}): ${err.message}\n`);
    process.exitCode = 1;
  } else {
    // File-system and similar errors: their messages name paths, never the backup's contents.
    process.stderr.write(`decode-backup: failed: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
});
