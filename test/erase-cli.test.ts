/** The erase, erase check-map and erasures commands, run as an operator runs them. */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { expect } from 'vitest';
import { cliFor } from './support/cli.ts';
import { email, fillDemo, snapshot } from './support/erasure.ts';
import { test } from './support/fixtures.ts';

test('erase is a dry run unless confirmed; then erases, lists, gives an authentic receipt', async ({
  env,
  tenant,
  startWorker,
  tmp,
}) => {
  const ids = await fillDemo(tenant, 6);
  const subject = String(ids[1]);
  startWorker();
  const cli = cliFor(env);
  const before = await snapshot(tenant);

  // Without --confirm: the counts, nothing changed, exit 2.
  const dry = await cli('erase', tenant.id, subject).then(
    () => {
      throw new Error('expected exit 2');
    },
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  expect(dry.code).toBe(2);
  expect(JSON.parse(dry.stdout).result).toMatchObject({
    dryRun: true,
    deleted: 13,
    anonymised: 6,
    erasureId: null,
  });
  expect(dry.stderr).toContain('add --confirm to erase');
  expect(await snapshot(tenant)).toEqual(before);

  const done = JSON.parse((await cli('erase', tenant.id, subject, '--confirm', '--wait')).stdout).result;
  expect(done).toMatchObject({ dryRun: false, verified: true, deleted: 13, anonymised: 6 });

  const listed = JSON.parse(
    (await cli('erasures', 'list', '--tenant', tenant.id, '--subject', subject)).stdout,
  );
  expect(listed).toEqual([
    expect.objectContaining({
      erasure: done.erasureId,
      tenant: tenant.id,
      state: 'complete',
      deleted: 13,
      verified: true,
    }),
  ]);
  // Another subject has no erasures.
  expect(
    JSON.parse((await cli('erasures', 'list', '--tenant', tenant.id, '--subject', String(ids[0]))).stdout),
  ).toEqual([]);

  const receipt = JSON.parse((await cli('erasures', 'receipt', done.erasureId)).stdout);
  expect(receipt).toMatchObject({
    format: 'dbfleet-erasure-receipt/1',
    erasureId: done.erasureId,
    tenant: tenant.id,
    verified: true,
    keyId: 'ledger-1',
  });
  expect(JSON.stringify(receipt)).not.toContain(subject);
  const file = path.join(tmp, 'receipt.json');
  await writeFile(file, JSON.stringify(receipt));
  expect(JSON.parse((await cli('erasures', 'verify-receipt', file)).stdout)).toEqual({
    erasure: done.erasureId,
    authentic: true,
  });
  await writeFile(file, JSON.stringify({ ...receipt, locations: [] }));
  await expect(cli('erasures', 'verify-receipt', file)).rejects.toMatchObject({ code: 1 });
});

test('erase check-map names what the map misses, by name and by content, and unindexed locations', async ({
  env,
  tenant,
}) => {
  await fillDemo(tenant, 3);
  await tenant.pg.withClient((c) =>
    c.query(`CREATE TABLE newsletter (id int PRIMARY KEY, contact text, mobile_phone text, note text);
             INSERT INTO newsletter VALUES (1, 'someone@example.test', '+49 30 1234567', 'hello')`),
  );
  await tenant.mongo.collection('devices').insertOne({ owner: { lastIp: '10.0.0.9' }, label: 'x' });
  await tenant.mongo.collection('sessions').dropIndex('userId_1');
  const cli = cliFor(env);
  const out = await cli('erase', 'check-map', tenant.id).then(
    () => {
      throw new Error('expected exit 2');
    },
    (e: { code: number; stdout: string }) => e,
  );
  expect(out.code).toBe(2);
  const check = JSON.parse(out.stdout);
  expect(check.problems).toEqual([]);
  expect(check.unindexed).toEqual(['mongo sessions.userId']);
  expect(check.unmapped).toEqual(
    expect.arrayContaining([
      { store: 'postgres', name: 'newsletter', field: 'contact', kind: 'email', by: 'content' },
      { store: 'postgres', name: 'newsletter', field: 'mobile_phone', kind: 'phone', by: 'name' },
      { store: 'mongo', name: 'devices', field: 'owner.lastIp', kind: 'ip', by: 'content' },
    ]),
  );
  // Mapped columns are covered; no value is ever printed.
  expect(check.unmapped.some((u: { name: string }) => u.name === 'users')).toBe(false);
  expect(out.stdout).not.toContain('someone@example.test');
  expect(out.stdout).not.toContain(email(1));
});
