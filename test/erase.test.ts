/** The erase job on the real services: exactly what the map says, nothing else, verified, recorded. */
import { Long } from 'mongodb';
import { describe, expect } from 'vitest';
import { anonymisedValue } from '../src/erase/anonymise.ts';
import { ErasureLedger, receiptIsAuthentic, receiptOf } from '../src/erase/ledger.ts';
import { defineConfig } from '../src/config/define.ts';
import { fillDemo, snapshot, type Snapshot, erased } from './support/erasure.ts';
import { failedAttempts, test } from './support/fixtures.ts';

/** What the demo map must leave of each location, given the subject's keys before the erase. */
function expectDemoErasure(before: Snapshot, after: Snapshot, subject: number, pseudonym: number) {
  const own = {
    'postgres:users': (r: Record<string, unknown>) => r.id === subject,
    'postgres:playlists': (r: Record<string, unknown>) => r.user_id === subject,
    'postgres:playlist_tracks': (r: Record<string, unknown>) =>
      Math.floor(Number(r.playlist_id) / 10) === subject,
    'postgres:consent': (r: Record<string, unknown>) => r.user_id === subject,
    'mongo:sessions': (r: Record<string, unknown>) => r.userId === subject,
    'mongo:listening_events': (r: Record<string, unknown>) => r.userId === subject,
    'mongo:audit_log': (r: Record<string, unknown>) => r.userId === subject,
  } as const;
  for (const [location, isOwn] of Object.entries(own)) {
    const was = before[location]!;
    const now = after[location]!;
    const theirs = [...was].filter(([, r]) => isOwn(r));
    expect(theirs.length, location).toBeGreaterThan(0);
    // Everyone else's rows: the same, value for value; nothing added.
    for (const [k, r] of was) if (!isOwn(r)) expect(now.get(k), `${location} ${k}`).toEqual(r);
    if (location === 'mongo:listening_events') {
      for (const [k, r] of theirs) expect(now.get(k)).toEqual({ ...r, userId: pseudonym });
      expect(now.size).toBe(was.size);
    } else if (location === 'mongo:audit_log') {
      for (const [k, r] of theirs)
        expect(now.get(k)).toEqual({ ...r, userId: pseudonym, ip: null, userAgent: null });
      expect(now.size).toBe(was.size);
    } else {
      for (const [k] of theirs) expect(now.has(k), `${location} ${k}`).toBe(false);
      expect(now.size).toBe(was.size - theirs.length);
    }
  }
}

test('the demo tenant: a subject deleted and anonymised exactly as the map says, others untouched, verified; again changes nothing', async ({
  deps,
  tenant,
  spareTenant,
  client,
  startWorker,
}) => {
  const ids = await fillDemo(tenant);
  const subject = ids[7]!;
  // Another tenant with the same people: an erasure in one never reaches the other.
  const bystander = await spareTenant();
  await fillDemo(bystander);
  const bystanderBefore = await snapshot(bystander);
  const before = await snapshot(tenant);
  startWorker();

  const job = await client.enqueue(
    'erase',
    { tenant: tenant.id, subject: { id: String(subject) } },
    { requestedBy: 'dpo@example.test' },
  );
  const result = await job.waitForResult({ timeoutMs: 60_000 });
  expect(result).toEqual({
    erasureId: expect.any(String),
    dryRun: false,
    verified: true,
    deleted: 1 + 2 + 6 + 2 + 2,
    anonymised: 5 + 1,
    // Children first: tracks before their playlists; everything that refers to users before users.
    locations: [
      { store: 'postgres', name: 'playlist_tracks', action: 'delete', count: 6, remaining: 0 },
      { store: 'postgres', name: 'playlists', action: 'delete', count: 2, remaining: 0 },
      { store: 'postgres', name: 'consent', action: 'delete', count: 2, remaining: 0 },
      { store: 'postgres', name: 'users', action: 'delete', count: 1, remaining: 0 },
      { store: 'mongo', name: 'sessions', action: 'delete', count: 2, remaining: 0 },
      { store: 'mongo', name: 'listening_events', action: 'anonymise', count: 5, remaining: 0 },
      { store: 'mongo', name: 'audit_log', action: 'anonymise', count: 1, remaining: 0 },
    ],
  });
  const pseudonym = anonymisedValue('hash', 'number', 'userId', {
    key: deps.ledgerKeys!.key('pseudonym'),
    tenant: tenant.id,
    subjectId: String(subject),
  }) as number;
  expect(pseudonym).toBeLessThan(0);
  expectDemoErasure(before, await snapshot(tenant), subject, pseudonym);
  expect(await snapshot(bystander)).toEqual(bystanderBefore);

  // The ledger: who asked, what changed where, verified; the subject only as a keyed hash.
  const ledger = new ErasureLedger(deps.control.pool, deps.prefix);
  const row = (await ledger.get(result.erasureId!))!;
  expect(row).toMatchObject({
    tenant: tenant.id,
    requested_by: 'dpo@example.test',
    state: 'complete',
    deleted: '13',
    anonymised: '6',
    verified: true,
    subject_hash: deps.ledgerKeys!.subjectHash(tenant.id, String(subject)),
  });
  expect(JSON.stringify(row)).not.toContain(String(subject));
  const receipt = receiptOf(row, deps.ledgerKeys!);
  expect(receipt).toMatchObject({ erasureId: result.erasureId, verified: true, locations: row.locations });
  expect(receiptIsAuthentic(receipt, deps.ledgerKeys!)).toBe(true);
  expect(receiptIsAuthentic({ ...receipt, verified: false } as never, deps.ledgerKeys!)).toBe(false);

  // Again: nothing to change, still verified, a second ledger entry.
  const again = await erased(client, tenant.id, String(subject));
  expect(again).toMatchObject({ verified: true, deleted: 0, anonymised: 0, dryRun: false });
  expect(again.erasureId).not.toBe(result.erasureId);
  // Someone the tenant never had: the same.
  const unknown = await erased(client, tenant.id, 'no-such-person');
  expect(unknown).toMatchObject({ verified: true, deleted: 0, anonymised: 0 });
  expect(await ledger.list({ tenant: tenant.id })).toHaveLength(3);
});

test('a dry run counts per location and changes nothing; nothing is recorded', async ({
  deps,
  tenant,
  client,
  startWorker,
}) => {
  const ids = await fillDemo(tenant, 5);
  const before = await snapshot(tenant);
  startWorker();
  const result = await erased(client, tenant.id, String(ids[2]), { dryRun: true });
  expect(result).toMatchObject({
    erasureId: null,
    dryRun: true,
    deleted: 13,
    anonymised: 6,
    verified: false,
  });
  expect(await snapshot(tenant)).toEqual(before);
  expect(await new ErasureLedger(deps.control.pool, deps.prefix).list({ tenant: tenant.id })).toEqual([]);
});

test('a map naming a missing column fails before changing anything, naming it, and is not retried', async ({
  tenant,
  deps,
  client,
  startWorker,
}) => {
  const ids = await fillDemo(tenant, 5);
  const before = await snapshot(tenant);
  await tenant.pg.withClient((c) => c.query('ALTER TABLE consent RENAME COLUMN user_id TO member_id'));
  startWorker();
  const job = await client.enqueue('erase', { tenant: tenant.id, subject: { id: String(ids[0]) } });
  await expect(job.waitForResult({ timeoutMs: 60_000 })).rejects.toThrow(
    /personal-data map does not fit tenant .*postgres consent: no column user_id/,
  );
  await tenant.pg.withClient((c) => c.query('ALTER TABLE consent RENAME COLUMN member_id TO user_id'));
  expect(await snapshot(tenant)).toEqual(before);
  const rows = await new ErasureLedger(deps.control.pool, deps.prefix).list({ tenant: tenant.id });
  expect(rows).toEqual([]);
  expect(await failedAttempts(deps)).toEqual([{ attempt: 1, error_code: 'map_mismatch' }]);
});

const chainConfig = defineConfig({
  personalData: [
    {
      store: 'postgres',
      name: 'customers',
      subjectField: 'ref',
      action: 'anonymise',
      anonymise: {
        email: { fake: 'email' },
        full_name: { fake: 'name' },
        phone: 'null',
        ref: { hash: { domain: 'customer' } },
      },
    },
    {
      store: 'postgres',
      name: 'invoices',
      through: { location: 'customers', field: 'customer_id', key: 'id' },
      action: 'anonymise',
      anonymise: { billing_address: { fixed: '(erased)' } },
    },
    {
      store: 'postgres',
      name: 'invoice_lines',
      through: { location: 'invoices', field: 'invoice_id', key: 'id' },
      action: 'anonymise',
      anonymise: { description: 'null' },
    },
    {
      store: 'postgres',
      name: 'line_notes',
      through: { location: 'invoice_lines', field: 'line_id', key: 'id' },
      action: 'delete',
    },
    // An integer subject column: 'C-3' is no integer, so nothing there can be the subject's.
    { store: 'postgres', name: 'loyalty_cards', subjectField: 'customer_no', action: 'delete' },
    {
      store: 'mongo',
      name: 'tickets',
      subjectField: 'customerRef',
      subjectType: ['string', 'number'],
      action: 'delete',
    },
  ],
});

describe('a second schema: a reference chain three levels deep, anonymised and deleted', () => {
  test.override({ config: chainConfig });

  test('every level reached through the one above; others untouched; keys of other people kept', async ({
    deps,
    tenant,
    client,
    startWorker,
  }) => {
    await tenant.pg.withClient((c) =>
      c.query(`
        CREATE TABLE customers (id serial PRIMARY KEY, ref text UNIQUE NOT NULL, email text, full_name text, phone text);
        CREATE TABLE invoices (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id), billing_address text, total numeric);
        CREATE TABLE invoice_lines (id serial PRIMARY KEY, invoice_id int NOT NULL REFERENCES invoices (id), description text, amount numeric);
        CREATE TABLE line_notes (id serial PRIMARY KEY, line_id int NOT NULL REFERENCES invoice_lines (id), body text);
        CREATE TABLE loyalty_cards (customer_no int, points int);
        INSERT INTO loyalty_cards VALUES (3, 10);
        INSERT INTO customers (ref, email, full_name, phone)
          SELECT 'C-' || i, 'c' || i || '@shop.test', 'Customer ' || i, '+49 30 ' || i FROM generate_series(1, 6) i;
        INSERT INTO invoices (customer_id, billing_address, total) SELECT 1 + i % 6, 'Street ' || i, i FROM generate_series(0, 17) i;
        INSERT INTO invoice_lines (invoice_id, description, amount) SELECT 1 + i % 18, 'Item ' || i, i FROM generate_series(0, 53) i;
        INSERT INTO line_notes (line_id, body) SELECT 1 + i % 54, 'Note ' || i FROM generate_series(0, 107) i;
      `),
    );
    await tenant.mongo.createCollection('tickets');
    await tenant.mongo.collection('tickets').insertMany([
      { customerRef: 'C-3', text: 'a' },
      { customerRef: 'C-3', text: 'b' },
      { customerRef: 'C-4', text: 'c' },
    ]);
    const dump = () =>
      tenant.pg.withClient(async (c) => {
        const q = async (sql: string) => (await c.query(sql)).rows;
        return {
          customers: await q('SELECT * FROM customers ORDER BY id'),
          invoices: await q('SELECT * FROM invoices ORDER BY id'),
          lines: await q('SELECT * FROM invoice_lines ORDER BY id'),
          notes: await q('SELECT * FROM line_notes ORDER BY id'),
        };
      });
    const before = await dump();
    startWorker();
    const result = await erased(client, tenant.id, 'C-3');
    // Customer 3 (id 3) has invoices 3, 9, 15; their lines 3 of each, each line 2 notes.
    expect(result.locations).toEqual([
      { store: 'postgres', name: 'line_notes', action: 'delete', count: 18, remaining: 0 },
      { store: 'postgres', name: 'invoice_lines', action: 'anonymise', count: 9, remaining: 0 },
      { store: 'postgres', name: 'invoices', action: 'anonymise', count: 3, remaining: 0 },
      { store: 'postgres', name: 'customers', action: 'anonymise', count: 1, remaining: 0 },
      { store: 'postgres', name: 'loyalty_cards', action: 'delete', count: 0, remaining: 0 },
      { store: 'mongo', name: 'tickets', action: 'delete', count: 2, remaining: 0 },
    ]);
    expect(result.verified).toBe(true);
    const after = await dump();
    const src = { key: deps.ledgerKeys!.key('pseudonym'), tenant: tenant.id, subjectId: 'C-3' };
    expect(after.customers).toEqual(
      before.customers.map((c) =>
        c.id === 3
          ? {
              id: 3,
              ref: anonymisedValue({ hash: { domain: 'customer' } }, 'text', 'ref', src),
              email: expect.stringMatching(/^anon_[0-9a-f]{12}@example\.invalid$/),
              full_name: expect.stringMatching(/^Anonymous [0-9a-f]{8}$/),
              phone: null,
            }
          : c,
      ),
    );
    const invoicesOf3 = new Set([3, 9, 15]);
    expect(after.invoices).toEqual(
      before.invoices.map((i) => (invoicesOf3.has(i.id) ? { ...i, billing_address: '(erased)' } : i)),
    );
    const linesOf3 = new Set(before.lines.filter((l) => invoicesOf3.has(l.invoice_id)).map((l) => l.id));
    expect(linesOf3.size).toBe(9);
    expect(after.lines).toEqual(
      before.lines.map((l) => (linesOf3.has(l.id) ? { ...l, description: null } : l)),
    );
    expect(after.notes).toEqual(before.notes.filter((n) => !linesOf3.has(n.line_id)));
    expect(
      await tenant.mongo
        .collection('tickets')
        .find({}, { projection: { _id: 0 } })
        .toArray(),
    ).toEqual([{ customerRef: 'C-4', text: 'c' }]);

    // Again: the pseudonymised customer is still found and checked, and nothing changes.
    const again = await erased(client, tenant.id, 'C-3');
    expect(again).toMatchObject({ verified: true, deleted: 0, anonymised: 0 });
    expect(await dump()).toEqual(after);
  });

  test('a table outside the map whose foreign key would block the erase: refused before anything changes', async ({
    tenant,
    client,
    startWorker,
  }) => {
    await tenant.pg.withClient((c) =>
      c.query(`
        CREATE TABLE customers (id serial PRIMARY KEY, ref text UNIQUE NOT NULL, email text, full_name text, phone text);
        CREATE TABLE invoices (id serial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers (id), billing_address text);
        CREATE TABLE invoice_lines (id serial PRIMARY KEY, invoice_id int NOT NULL REFERENCES invoices (id), description text);
        CREATE TABLE line_notes (id serial PRIMARY KEY, line_id int NOT NULL REFERENCES invoice_lines (id), body text);
        CREATE TABLE note_reactions (note_id int NOT NULL REFERENCES line_notes (id), emoji text);
        CREATE TABLE loyalty_cards (customer_no int, points int);
        INSERT INTO customers (ref, email) VALUES ('C-1', 'c1@shop.test');
      `),
    );
    await tenant.mongo.createCollection('tickets');
    startWorker();
    await expect(erased(client, tenant.id, 'C-1')).rejects.toThrow(
      /table note_reactions refers to line_notes \(note_reactions_note_id_fkey\) and is not in the map/,
    );
    const email = await tenant.pg.withClient(
      async (c) => (await c.query('SELECT email FROM customers')).rows,
    );
    expect(email).toEqual([{ email: 'c1@shop.test' }]);
  });
});

test('the personal-data map is checked as declared: unknown fields, paths to nowhere, circles, keys anonymised', () => {
  expect(() =>
    defineConfig({
      personalData: [
        { store: 'postgres', name: 'a', subjectField: 'id', action: 'delete', colour: 'red' } as never,
        {
          store: 'postgres',
          name: 'b',
          through: { location: 'nope', field: 'a_id', key: 'id' },
          action: 'delete',
        },
        { store: 'postgres', name: 'c', through: { location: 'd', field: 'x', key: 'id' }, action: 'delete' },
        { store: 'postgres', name: 'd', through: { location: 'c', field: 'y', key: 'id' }, action: 'delete' },
        {
          store: 'mongo',
          name: 'e',
          subjectField: 'u',
          action: 'anonymise',
          anonymise: { u: { hash: { salt: 1 } } as never },
        },
        { store: 'postgres', name: 'f', subjectField: 'id', action: 'anonymise', anonymise: { k: 'null' } },
        {
          store: 'postgres',
          name: 'g',
          through: { location: 'f', field: 'f_k', key: 'k' },
          action: 'delete',
        },
        { store: 'postgres', name: 'h', subjectField: 'id', subjectType: 'number', action: 'delete' },
      ],
    }),
  ).toThrow(
    new RegExp(
      [
        'personalData\\[0\\]: unknown field colour',
        'personalData\\[4\\]\\.anonymise\\.u: hash: unknown option salt',
        'personalData\\[7\\]\\.subjectType: only for mongo',
        'personalData\\[1\\]\\.through\\.location: postgres nope is not mapped',
        'personalData\\[2\\]\\.through: the path from c runs in a circle',
        'personalData\\[6\\]\\.through\\.key: f\\.k is anonymised',
      ].join('[\\s\\S]*'),
    ),
  );
});

describe('a deployment whose config module has no personal-data map', () => {
  test.override({ config: defineConfig({}) });

  test('an erase fails at once, naming why, and records nothing', async ({
    deps,
    tenant,
    client,
    startWorker,
  }) => {
    startWorker();
    await expect(
      (await client.enqueue('erase', { tenant: tenant.id, subject: { id: '1' } })).waitForResult({
        timeoutMs: 30_000,
      }),
    ).rejects.toThrow(/no personalData map/);
    expect(await new ErasureLedger(deps.control.pool, deps.prefix).list()).toEqual([]);
  });
});

describe('subject ids are read the same way by every store', () => {
  test('an id with a surrounding space is refused at enqueue; ids past 2^53 match the exact 64-bit integer', async ({
    tenant,
    client,
    startWorker,
  }) => {
    await expect(client.enqueue('erase', { tenant: tenant.id, subject: { id: ' 42' } })).rejects.toThrow(
      /subject\.id: must not begin or end with a space/,
    );
    const big = '9007199254740993'; // 2^53 + 1: as a double it would be 2^53
    await tenant.mongo.collection('sessions').insertMany([
      { _id: 'big-long' as never, userId: Long.fromString(big) },
      { _id: 'big-double' as never, userId: 2 ** 53 },
      { _id: 'big-string' as never, userId: big },
    ]);
    startWorker();
    const r = await erased(client, tenant.id, big);
    expect(r.locations.find((l) => l.name === 'sessions')).toMatchObject({ count: 1, remaining: 0 });
    // The map says sessions hold the id as a number: the string and the other number stay.
    expect(
      (
        await tenant.mongo
          .collection('sessions')
          .find({}, { projection: { _id: 1 } })
          .toArray()
      ).map((d) => d._id),
    ).toEqual(['big-double', 'big-string']);
  });
});

describe('hard schemas: a length-limited id column, null path keys, a partitioned table', () => {
  test.override({
    config: defineConfig({
      personalData: [
        { store: 'postgres', name: 'accounts', subjectField: 'ref', action: 'delete' },
        { store: 'postgres', name: 'visits', subjectField: 'account_ref', action: 'delete' },
        { store: 'mongo', name: 'orders', subjectField: 'customer', action: 'delete' },
        {
          store: 'mongo',
          name: 'order_items',
          through: { location: 'orders', field: 'order', key: 'ref' },
          action: 'delete',
        },
      ],
    }),
  });

  test('only the subject is reached', async ({ tenant, client, startWorker }) => {
    await tenant.pg.withClient((c) =>
      c.query(`
        CREATE TABLE accounts (ref varchar(12) PRIMARY KEY, name text);
        INSERT INTO accounts VALUES ('CUST-0000042', 'someone else'), ('CUST-0000043', 'the subject');
        CREATE TABLE visits (account_ref varchar(12) REFERENCES accounts (ref), at date NOT NULL) PARTITION BY RANGE (at);
        CREATE TABLE visits_2026 PARTITION OF visits FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        INSERT INTO visits VALUES ('CUST-0000042', '2026-05-01'), ('CUST-0000043', '2026-05-02');
      `),
    );
    await tenant.mongo.collection('orders').insertMany([
      { ref: 'o1', customer: 'CUST-0000043' },
      { ref: null, customer: 'CUST-0000043' },
      { ref: 'o2', customer: 'CUST-0000042' },
    ]);
    await tenant.mongo
      .collection('order_items')
      .insertMany([
        { order: 'o1', sku: 'a' },
        { order: 'o2', sku: 'b' },
        { sku: 'no order' },
        { order: null, sku: 'null order' },
      ]);
    startWorker();
    // A typo one character past the column's length: a cast to varchar(12) would cut it to
    // someone else's id.
    const typo = await erased(client, tenant.id, 'CUST-0000042X');
    expect(typo).toMatchObject({ deleted: 0, verified: true });
    const r = await erased(client, tenant.id, 'CUST-0000043');
    expect(r.locations).toEqual([
      { store: 'postgres', name: 'visits', action: 'delete', count: 1, remaining: 0 },
      { store: 'postgres', name: 'accounts', action: 'delete', count: 1, remaining: 0 },
      { store: 'mongo', name: 'order_items', action: 'delete', count: 1, remaining: 0 },
      { store: 'mongo', name: 'orders', action: 'delete', count: 2, remaining: 0 },
    ]);
    expect(await tenant.pg.withClient(async (c) => (await c.query('SELECT ref FROM accounts')).rows)).toEqual(
      [{ ref: 'CUST-0000042' }],
    );
    // The subject's order without a ref did not take the items without an order with it.
    expect(
      (
        await tenant.mongo
          .collection('order_items')
          .find({}, { projection: { _id: 0, sku: 1 } })
          .toArray()
      ).map((d) => d.sku),
    ).toEqual(['b', 'no order', 'null order']);
  });
});

describe('foreign keys that would fail the erase or delete what the map keeps', () => {
  test.override({
    config: defineConfig({
      personalData: [
        { store: 'postgres', name: 'members', subjectField: 'id', action: 'delete' },
        {
          store: 'postgres',
          name: 'receipts',
          subjectField: 'member_id',
          action: 'anonymise',
          anonymise: { email: 'null' },
        },
      ],
    }),
  });

  test('a self-reference and a cascade into an anonymised table are refused before anything changes', async ({
    tenant,
    client,
    startWorker,
  }) => {
    await tenant.pg.withClient((c) =>
      c.query(`
        CREATE TABLE members (id int PRIMARY KEY, invited_by int REFERENCES members (id));
        CREATE TABLE receipts (id int PRIMARY KEY, member_id int REFERENCES members (id) ON DELETE CASCADE, email text);
        INSERT INTO members VALUES (1, NULL), (2, 1);
        INSERT INTO receipts VALUES (10, 1, 'one@example.test');
      `),
    );
    startWorker();
    const job = await client.enqueue('erase', { tenant: tenant.id, subject: { id: '1' } });
    const err = await job.waitForResult({ timeoutMs: 60_000 }).then(
      () => undefined,
      (e: Error) => e.message,
    );
    expect(err).toMatch(
      /members\.invited_by \(members_invited_by_fkey\) refers to members other than by the subject/,
    );
    expect(err).toMatch(
      /receipts\.member_id \(receipts_member_id_fkey\) refers to members, which is deleted, but receipts is anonymised: the delete would cascade/,
    );
    expect(
      await tenant.pg.withClient(
        async (c) => (await c.query('SELECT count(*)::int AS n FROM receipts WHERE email IS NOT NULL')).rows,
      ),
    ).toEqual([{ n: 1 }]);
  });
});
