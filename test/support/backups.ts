/**
 * For backup and restore tests: a tenant filled with every kind of thing a backup must carry, and
 * exact comparisons: an ordered digest per table and per collection, and a fingerprint of the schema.
 */
import { createHash } from 'node:crypto';
import { Binary, BSONRegExp, Decimal128, Double, Int32, Long, ObjectId, type Db } from 'mongodb';
import type { TenantHandle } from './fixtures.ts';

/**
 * The demo tables filled, plus tables with a serial column, an identity column, a generated column,
 * a free-standing sequence, arrays, jsonb, numeric, bytea, text with tabs, newlines and backslashes,
 * an expression index and a partial unique index; the demo collections plus one with a validator, a
 * unique index and a TTL index, documents with every common BSON type.
 */
export async function fillTenant(t: TenantHandle, rows = 300): Promise<void> {
  await t.pg.withClient(async (c) => {
    await c.query(`
      INSERT INTO users SELECT i, 'u' || i || '@example.test', 'User ' || i, CASE WHEN i % 3 = 0 THEN NULL ELSE 'DE' END,
        1950 + i % 60, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute' FROM generate_series(1, ${rows}) i;
      INSERT INTO playlists SELECT i, 1 + i % ${rows}, 'List ' || i, i % 2 = 0, timestamptz '2026-02-01 00:00:00+00' FROM generate_series(1, ${rows}) i;
      INSERT INTO playlist_tracks SELECT 1 + i % ${rows}, i, 'track-' || i, timestamptz '2026-03-01 00:00:00+00' FROM generate_series(1, ${rows}) i;
      INSERT INTO consent SELECT i, p, i % 2 = 0, timestamptz '2026-04-01 00:00:00+00' FROM generate_series(1, ${rows}) i, unnest(ARRAY['ads', 'mail']) p;
      CREATE TABLE notes (
        id bigserial PRIMARY KEY,
        body text NOT NULL CHECK (length(body) < 1000),
        tags text[],
        meta jsonb,
        amount numeric(12, 2) DEFAULT 0,
        at timestamptz NOT NULL DEFAULT now(),
        data bytea,
        user_id bigint REFERENCES users (id)
      );
      CREATE UNIQUE INDEX notes_body_lower ON notes (lower(body)) WHERE amount > 0;
      CREATE INDEX notes_meta ON notes USING gin (meta);
      INSERT INTO notes (body, tags, meta, amount, at, data, user_id)
        SELECT 'note ' || i || E'\\ttab\\nnewline\\\\back ü', ARRAY['a', NULL, 'c"q'], jsonb_build_object('i', i, 'n', NULL),
          i / 3.0, timestamptz '2026-05-01 00:00:00+00', decode('00ff' || lpad(to_hex(i), 4, '0'), 'hex'), 1 + i % ${rows}
        FROM generate_series(1, ${rows}) i;
      CREATE TABLE events_old (
        id integer GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 10) PRIMARY KEY,
        kind text COLLATE "C" NOT NULL DEFAULT 'k',
        total integer GENERATED ALWAYS AS (id * 2) STORED
      );
      -- Renamed: its identity sequence keeps the old table's name.
      ALTER TABLE events_old RENAME TO events;
      INSERT INTO events (kind) SELECT 'e' || i FROM generate_series(1, 50) i;
      CREATE SEQUENCE invoice_numbers START 1000 INCREMENT 5;
      SELECT nextval('invoice_numbers'), nextval('invoice_numbers');
    `);
  });
  const n = Math.min(rows, 500);
  await t.mongo.collection('sessions').insertMany(
    Array.from({ length: n }, (_, i) => ({
      _id: `s${i}` as unknown as ObjectId,
      userId: i + 1,
      device: `Device ${i}`,
      createdAt: new Date(Date.UTC(2026, 0, 1, 0, i)),
      expiresAt: new Date(Date.UTC(2026, 1, 1, 0, i)),
    })),
  );
  await t.mongo.collection('listening_events').insertMany(
    Array.from({ length: n }, (_, i) => ({
      _id: new ObjectId(i.toString(16).padStart(24, '0')),
      userId: Long.fromNumber(i + 1),
      trackId: `track-${i}`,
      playedAt: new Date(Date.UTC(2026, 2, 1, 0, 0, i)),
      ms: new Int32(1000 + i),
      ratio: new Double(i / 7),
      whole: new Double(2),
      price: Decimal128.fromString(`${i}.10`),
      tags: ['a', i, null, { deep: [1, { deeper: true }] }],
      bin: new Binary(Buffer.from([0, 1, 2, i % 256])),
      re: new BSONRegExp('^tr.*k$', 'i'),
    })),
  );
  await t.mongo.collection('audit_log').insertMany(
    Array.from({ length: 20 }, (_, i) => ({
      userId: i + 1,
      action: 'login',
      at: new Date(Date.UTC(2026, 3, 1, i)),
    })),
  );
  await t.mongo.createCollection('profiles', {
    validator: { $jsonSchema: { bsonType: 'object', required: ['userId'] } },
  });
  await t.mongo.collection('profiles').createIndex({ userId: 1 }, { unique: true, name: 'profiles_user' });
  await t.mongo
    .collection('profiles')
    .createIndex({ lastSeen: 1 }, { expireAfterSeconds: 86_400 * 365 * 50 });
  await t.mongo
    .collection('profiles')
    .insertMany(
      Array.from({ length: 30 }, (_, i) => ({ userId: i + 1, lastSeen: new Date(Date.UTC(2026, 4, 1)) })),
    );
}

/** Every table's rows (ordered) and every collection's documents (by _id, as raw BSON) hashed. */
export async function digests(t: TenantHandle): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  await t.pg.withClient(async (c) => {
    const { rows } = await c.query<{ name: string }>(
      `SELECT relname AS name FROM pg_class WHERE relnamespace = $1::regnamespace AND relkind = 'r'
         AND relname NOT LIKE '\\_dbfleet%' ORDER BY relname`,
      [t.pg.schema],
    );
    for (const { name } of rows) {
      const r = await c.query<{ d: string; n: string }>(
        `SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS d, count(*) AS n FROM "${name}" x`,
      );
      out[`postgres/${name}`] = `${r.rows[0]!.n}:${r.rows[0]!.d}`;
    }
  });
  for (const name of await collectionNames(t.mongo)) {
    const hash = createHash('sha256');
    let n = 0;
    for await (const raw of t.mongo
      .collection(name)
      .find({}, { sort: { _id: 1 }, raw: true }) as AsyncIterable<Buffer>) {
      hash.update(raw);
      n++;
    }
    out[`mongo/${name}`] = `${n}:${hash.digest('hex')}`;
  }
  return out;
}

async function collectionNames(db: Db): Promise<string[]> {
  return (await db.listCollections({}, { nameOnly: true }).toArray())
    .map((c) => c.name)
    .filter((n) => !n.startsWith('_dbfleet'))
    .sort();
}

/**
 * The schema's structure, without its name: columns with types, defaults, identity and generation;
 * constraints; indexes; sequences with their settings and positions; each collection's options and
 * indexes.
 */
export async function fingerprint(t: TenantHandle): Promise<unknown> {
  const pg = await t.pg.withClient(async (c) => {
    const q = async (sql: string) => (await c.query(sql, [t.pg.schema])).rows;
    return {
      columns:
        await q(`SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                          pg_get_expr(d.adbin, d.adrelid) AS def, a.attidentity, a.attgenerated, a.attcollation::regcollation::text AS collation
                        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                        WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
                        ORDER BY 1, a.attnum`),
      constraints:
        await q(`SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) AS def FROM pg_constraint k
                            JOIN pg_class c ON c.oid = k.conrelid WHERE c.relnamespace = $1::regnamespace ORDER BY 1, 2`),
      indexes: (
        await q(`SELECT c.relname, pg_get_indexdef(c.oid) AS def FROM pg_class c
                 WHERE c.relnamespace = $1::regnamespace AND c.relkind = 'i' ORDER BY 1`)
      ).map((r) => ({ ...r, def: String(r.def).replace(` ON ${t.pg.schema}.`, ' ON ') })),
      sequences:
        await q(`SELECT c.relname, s.seqtypid::regtype::text AS type, s.seqstart, s.seqincrement, s.seqmin,
                            s.seqmax, s.seqcache, s.seqcycle, ps.last_value
                          FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
                          JOIN pg_sequences ps ON ps.schemaname = $1 AND ps.sequencename = c.relname
                          WHERE c.relnamespace = $1::regnamespace ORDER BY 1`),
    };
  });
  const mongo: Record<string, unknown> = {};
  for (const name of await collectionNames(t.mongo)) {
    const info = (await t.mongo.listCollections({ name }).toArray())[0] as { options?: unknown };
    mongo[name] = {
      options: info.options,
      indexes: (await t.mongo.collection(name).listIndexes().toArray())
        .map(({ ns: _ns, ...i }) => i)
        // Index order is the order they were built in, which a restore need not keep.
        .sort((a, b) => String(a.name).localeCompare(String(b.name))),
    };
  }
  return { pg, mongo };
}
