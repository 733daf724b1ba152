/**
 * export-subject against the real services: exactly the subject's rows and documents, per the map, in
 * a bundle that opens with the key and checks against its manifest; a link that works until its
 * expiry; a sweep that leaves nothing after it; a map that does not fit refused before anything is
 * written; and no personal value in Redis, the audit log, the export record or the worker's log.
 */
import { mkdtemp } from 'node:fs/promises';
import path from 'node:path';
import { existsSync } from 'node:fs';
import { describe, expect, onTestFinished } from 'vitest';
import demoConfig from '../dbfleet.config.ts';
import { bundleKey, keyFileKey } from '../src/erase/export-bundle.ts';
import { expireExports } from '../src/erase/export-expire.ts';
import { exportSubject as runExport } from '../src/erase/export-subject.ts';
import { openBundle, readKeyFile, unwrapExportKey } from '../src/erase/export-open.ts';
import { ExportRecords } from '../src/erase/export-records.ts';
import { requireLedgerKeys } from '../src/erase/ledger-keys.ts';
import { createLogger } from '../src/logger.ts';
import { closeDeps, createDeps, type FleetDeps } from '../src/runtime/deps.ts';
import { startWorker as startFleetWorker } from '../src/runtime/worker.ts';
import type { ObjectStore } from '../src/storage/object-store.ts';
import { loadEnv } from '../src/config/env.ts';
import { handlers } from '../workers/index.ts';
import {
  ADA,
  ADA_COUNTS,
  ADA_VALUES,
  BIG_COUNTER,
  BIG_PLAYLIST,
  fillPeople,
  forgetExports,
  readOpened,
} from './support/exports.ts';
import { erased } from './support/erasure.ts';
import { eventually, test, type TenantHandle } from './support/fixtures.ts';

async function opened(store: ObjectStore, deps: FleetDeps, tenant: string, exportId: string, tmp: string) {
  const keyFile = await readKeyFile(store, tenant, exportId);
  const dataKey = await unwrapExportKey(keyFile, deps.backupKeys);
  const out = await mkdtemp(path.join(tmp, 'opened-'));
  await openBundle(store, keyFile, dataKey, out);
  return readOpened(out);
}

const status = async (url: string) => (await fetch(url)).status;

/** Ada and two others in every mapped location; the test's exports deleted from S3 when it ends. */
async function prepare(deps: FleetDeps, tenant: TenantHandle): Promise<void> {
  onTestFinished(() => forgetExports(deps, tenant.id));
  await fillPeople(tenant);
}

describe('export-subject', () => {
  test('exports exactly the subject’s rows and documents; the bundle opens with the key and checks out', async ({
    deps,
    tenant,
    client,
    startWorker,
    tmp,
  }) => {
    await prepare(deps, tenant);
    startWorker();
    const job = await client.enqueue('export-subject', { tenant: tenant.id, subject: { id: ADA.id } });
    const result = await job.waitForResult({ timeoutMs: 60_000 });

    expect(result).toMatchObject({
      exportId: job.runId,
      objectKey: bundleKey(tenant.id, job.runId),
      destination: 's3',
      keyId: 'test-1',
      records: 14,
    });
    expect(Object.fromEntries(result.locations.map((l) => [`${l.store}/${l.name}`, l.records]))).toEqual(
      ADA_COUNTS,
    );
    // Seven days, the default, from when the export began.
    const days = (Date.parse(result.expiresAt) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(6.99);
    expect(days).toBeLessThanOrEqual(7);
    expect((await deps.objects.head(result.objectKey))?.size).toBe(result.bytes);

    const { manifest, text, json } = await opened(deps.objects, deps, tenant.id, result.exportId, tmp);
    expect(manifest).toMatchObject({
      format: 'dbfleet-subject-export/1',
      exportId: result.exportId,
      tenant: tenant.id,
      expiresAt: result.expiresAt,
    });
    // readOpened checked each file's size and SHA-256 against the manifest.
    expect(Object.fromEntries(manifest.files.map((f) => [f.path.replace(/\.json$/, ''), f.records]))).toEqual(
      ADA_COUNTS,
    );

    expect(json['postgres/users.json']).toEqual([
      {
        id: Number(ADA.id),
        email: ADA.email,
        email_domain: null,
        display_name: ADA.name,
        country: 'GB',
        birth_year: 1980,
        created_at: expect.stringMatching(/^2026-01-01T/),
      },
    ]);
    expect(Date.parse(json['postgres/users.json']![0]!.created_at as string)).toBe(
      Date.parse('2026-01-01T00:00:00Z'),
    );
    expect(json['postgres/playlists.json']!.map((p) => p.name).sort()).toEqual([
      'Ada quiet',
      'Ada road trip',
    ]);
    // Reached through Ada's playlists, the big id among them: digits exact, as PostgreSQL wrote them.
    expect(json['postgres/playlist_tracks.json']!.map((t) => t.track_id).sort()).toEqual([
      'track-a',
      'track-b',
      'track-c',
    ]);
    expect(text['postgres/playlists.json']).toContain(`"id":${BIG_PLAYLIST}`);
    expect(text['postgres/playlist_tracks.json']).toContain(`"playlist_id":${BIG_PLAYLIST}`);
    expect(json['postgres/consent.json']!.map((c) => [c.purpose, c.granted]).sort()).toEqual([
      ['ads', true],
      ['mail', false],
    ]);
    expect(json['mongo/sessions.json']!.map((s) => s._id).sort()).toEqual(['sess-ada-1', 'sess-ada-2']);
    expect(json['mongo/listening_events.json']!.map((e) => e._id).sort()).toEqual([
      'ev-ada-1',
      'ev-ada-2',
      'ev-ada-3',
    ]);
    // Relaxed Extended JSON: dates as $date, a Long a double cannot hold stays exact.
    expect(text['mongo/listening_events.json']).toContain(`"counter":{"$numberLong":"${BIG_COUNTER}"}`);
    expect(text['mongo/listening_events.json']).toContain('"playedAt":{"$date":"2026-05-01T10:00:00Z"}');
    expect(json['mongo/audit_log.json']).toEqual([
      {
        _id: 'log-ada',
        userId: Number(ADA.id),
        action: 'login',
        ip: '203.0.113.77',
        userAgent: 'AdaBrowser/1.0',
      },
    ]);
    // Nobody else's data: not their ids, emails, names, playlists, tracks or documents.
    const all = Object.values(text).join('\n');
    for (const other of [
      '770001235',
      '770001236',
      'bob.other',
      'Bob Otherson',
      'Cy Thirdly',
      'track-bob',
      'track-cy',
      'sess-bob',
      'sess-text',
      'ev-bob',
      'log-bob',
      '5002',
    ])
      expect(all).not.toContain(other);

    // Recorded under the subject's keyed hash only.
    const row = await new ExportRecords(deps.control.pool, deps.prefix).get(result.exportId);
    expect(row).toMatchObject({
      tenant: tenant.id,
      subject_hash: requireLedgerKeys(deps.ledgerKeys).subjectHash(tenant.id, ADA.id),
      destination: 's3',
      object_key: result.objectKey,
      key_id: 'test-1',
      records: '14',
      stored_bytes: String(result.bytes),
      deleted_at: null,
    });
    expect(row!.expires_at.toISOString()).toBe(result.expiresAt);

    // The link is a presigned GET of the sealed bundle: no credentials needed, ciphertext only.
    const res = await fetch(result.link);
    expect(res.status).toBe(200);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.length).toBe(result.bytes);
    expect(body.subarray(0, 4).toString()).toBe('DBF1');
    expect(body.toString('latin1')).not.toContain(ADA.email);
    expect(result.link).toMatch(/X-Amz-Expires=\d+/);
  });

  test('the link stops working at expiry; the next export job sweeps the bundle away', async ({
    deps,
    tenant,
    client,
    startWorker,
  }) => {
    await prepare(deps, tenant);
    startWorker();
    const first = await (
      await client.enqueue('export-subject', {
        tenant: tenant.id,
        subject: { id: ADA.id },
        expiresInSeconds: 60,
      })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(Date.parse(first.expiresAt) - Date.now()).toBeLessThanOrEqual(60_000);
    expect(await status(first.link)).toBe(200);

    await new Promise((r) => setTimeout(r, Date.parse(first.expiresAt) - Date.now() + 1_500));
    // s3rver enforces a presigned URL's expiry as S3 does: 403 AccessDenied, "Request has expired".
    const expired = await fetch(first.link);
    expect(expired.status).toBe(403);
    expect(await expired.text()).toMatch(/Request has expired/);
    // The object is still there until a sweep: a link is not the only way to an object.
    expect(await deps.objects.head(first.objectKey)).not.toBeNull();

    // Any export job sweeps first: this one, for another person, deletes the expired bundle.
    const second = await (
      await client.enqueue('export-subject', { tenant: tenant.id, subject: { id: '770001235' } })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(await deps.objects.head(first.objectKey)).toBeNull();
    expect(await deps.objects.head(keyFileKey(tenant.id, first.exportId))).toBeNull();
    const records = new ExportRecords(deps.control.pool, deps.prefix);
    expect((await records.get(first.exportId))!.deleted_at).toBeInstanceOf(Date);
    // The unexpired one stays.
    expect(await deps.objects.head(second.objectKey)).not.toBeNull();
    expect((await records.get(second.exportId))!.deleted_at).toBeNull();
    expect(await status(second.link)).toBe(200);
    // Swept again: nothing more to do.
    expect(await expireExports(deps)).toEqual({ deleted: [], failed: [] });
  });

  test('a local export: the link is the bundle’s path; the sweep deletes it at expiry', async ({
    deps,
    tenant,
    client,
    startWorker,
    tmp,
  }) => {
    await prepare(deps, tenant);
    startWorker();
    const result = await (
      await client.enqueue('export-subject', {
        tenant: tenant.id,
        subject: { id: ADA.id },
        destination: 'local',
        expiresInSeconds: 3600,
      })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(result.destination).toBe('local');
    expect(result.link).toBe(path.join(tmp, 'exports', tenant.id, result.exportId, 'bundle'));
    expect(existsSync(result.link)).toBe(true);
    const { manifest } = await opened(deps.localObjects, deps, tenant.id, result.exportId, tmp);
    expect(manifest.files.reduce((n, f) => n + f.records, 0)).toBe(14);

    // Not yet expired: kept. An hour on: deleted, key.json first, and recorded so.
    expect(await expireExports(deps)).toEqual({ deleted: [], failed: [] });
    const later = new Date(Date.parse(result.expiresAt) + 1);
    expect(await expireExports(deps, { now: later })).toEqual({ deleted: [result.exportId], failed: [] });
    expect(existsSync(result.link)).toBe(false);
    expect(existsSync(path.join(path.dirname(result.link), 'key.json'))).toBe(false);
  });

  test('a subject with no data gets a bundle of empty files', async ({
    deps,
    tenant,
    client,
    startWorker,
    tmp,
  }) => {
    await prepare(deps, tenant);
    startWorker();
    const job = await client.enqueue('export-subject', {
      tenant: tenant.id,
      subject: { id: 'not-a-number' },
    });
    const result = await job.waitForResult({ timeoutMs: 60_000 });
    expect(result.records).toBe(0);
    const { json } = await opened(deps.objects, deps, tenant.id, result.exportId, tmp);
    expect(Object.keys(json)).toHaveLength(7);
    expect(Object.values(json).every((rows) => rows.length === 0)).toBe(true);
  });

  test('after an erasure: what was deleted is gone, what was anonymised is still found by the pseudonym', async ({
    deps,
    tenant,
    client,
    startWorker,
    tmp,
  }) => {
    await prepare(deps, tenant);
    startWorker();
    await erased(client, tenant.id, ADA.id);
    const result = await (
      await client.enqueue('export-subject', { tenant: tenant.id, subject: { id: ADA.id } })
    ).waitForResult({ timeoutMs: 60_000 });
    expect(Object.fromEntries(result.locations.map((l) => [`${l.store}/${l.name}`, l.records]))).toEqual({
      ...Object.fromEntries(Object.keys(ADA_COUNTS).map((k) => [k, 0])),
      'mongo/listening_events': 3,
      'mongo/audit_log': 1,
    });
    const { text, json } = await opened(deps.objects, deps, tenant.id, result.exportId, tmp);
    expect(json['mongo/audit_log.json']![0]).toMatchObject({ _id: 'log-ada', action: 'login', ip: null });
    for (const value of ADA_VALUES) expect(Object.values(text).join('\n')).not.toContain(value);
  });

  test('a retry of the run writes the same objects and record again, under the same data key', async ({
    deps,
    tenant,
    tmp,
  }) => {
    await prepare(deps, tenant);
    let saved: unknown;
    const checkpoint = {
      get: async <T>() => saved as T | undefined,
      set: async (v: unknown) => void (saved = structuredClone(v)),
      finish: async (v: unknown) => void (saved = structuredClone(v)),
    };
    // The first attempt loses its control-database connection after writing the bundle.
    class FlakyRecords extends ExportRecords {
      failOnce = true;
      override async complete(id: string, n: number, bytes: number): Promise<void> {
        if (this.failOnce) {
          this.failOnce = false;
          throw new Error('connection lost');
        }
        return super.complete(id, n, bytes);
      }
    }
    const records = new FlakyRecords(deps.control.pool, deps.prefix);
    const run = () =>
      runExport(
        {
          tenant: tenant.id,
          subjectId: ADA.id,
          runId: '0b7e6a52-4d1c-4b57-9a38-3f0d1f2f4a11',
          destination: 's3',
          expiresInSeconds: 3600,
          requestedBy: 'test',
        },
        {
          map: demoConfig.personalData!,
          target: { postgres: tenant.pg, mongo: tenant.mongo },
          store: deps.objects,
          ledgerKeys: requireLedgerKeys(deps.ledgerKeys),
          backupKeys: deps.backupKeys,
          records,
          checkpoint,
          link: async (key) => key,
          progress: async () => undefined,
          throwIfInterrupted: () => undefined,
          log: deps.log,
          locks: { waitMs: 5_000, leaseMs: 30_000, holder: 'test' },
        },
      );
    await expect(run()).rejects.toThrow('connection lost');
    const exportId = '0b7e6a52-4d1c-4b57-9a38-3f0d1f2f4a11';
    const first = await readKeyFile(deps.objects, tenant.id, exportId);
    // Written, but not recorded as complete: incomplete, and swept at its expiry if never retried.
    expect((await records.get(exportId))!.records).toBeNull();

    const result = await run();
    expect(result.exportId).toBe(exportId);
    const second = await readKeyFile(deps.objects, tenant.id, exportId);
    expect(second.dataKey).toEqual(first.dataKey);
    const keys = [];
    for await (const o of deps.objects.list(`exports/${tenant.id}/`)) keys.push(o.key);
    expect(keys.sort()).toEqual([bundleKey(tenant.id, exportId), keyFileKey(tenant.id, exportId)]);
    expect(await records.list({ tenant: tenant.id, limit: 10 })).toHaveLength(1);
    expect((await records.get(exportId))!.records).toBe('14');
    const { manifest } = await opened(deps.objects, deps, tenant.id, exportId, tmp);
    expect(manifest.files.reduce((n, f) => n + f.records, 0)).toBe(14);
    // Delivered again after it completed: the recorded outcome, nothing rewritten.
    expect(await run()).toEqual(result);
  });

  test('bad input is refused at enqueue; a map that does not fit fails before anything is written', async ({
    env,
    deps,
    tenant,
    client,
  }) => {
    await prepare(deps, tenant);
    for (const [payload, message] of [
      [{ tenant: tenant.id, subject: { id: ADA.id }, expiresInSeconds: 30 }, /expiresInSeconds: Too small/],
      [
        { tenant: tenant.id, subject: { id: ADA.id }, expiresInSeconds: 604_801 },
        /expiresInSeconds: Too big/,
      ],
      [{ tenant: tenant.id, subject: { id: '' } }, /subject\.id:/],
      [
        { tenant: tenant.id, subject: { id: ` ${ADA.id}` } },
        /subject\.id: must not begin or end with a space/,
      ],
      [{ tenant: tenant.id, subject: { id: ADA.id }, destination: 'ftp' }, /destination:/],
      [
        { tenant: tenant.id, subject: { id: ADA.id, email: ADA.email } },
        /subject: Unrecognized key: "email"/,
      ],
    ] as const)
      await expect(client.enqueue('export-subject', payload as never)).rejects.toThrow(message);

    const personalData = demoConfig.personalData!.map((l) =>
      l.name === 'consent' ? { ...l, subjectField: 'member_id' } : l,
    );
    const other = createDeps(env, { ...demoConfig, personalData }, createLogger('silent'));
    const worker = startFleetWorker(other, { handlers, queues: ['export-subject'] });
    try {
      const job = await client.enqueue('export-subject', { tenant: tenant.id, subject: { id: ADA.id } });
      const queue = client.queue('export-subject');
      await eventually(async () => (await queue.getJobState(job.id)) === 'failed');
      const failed = (await queue.getJob(job.id))!;
      expect(failed.attemptsMade).toBe(1);
      expect(failed.failedReason).toMatch(/^\[map_mismatch\] .*postgres consent: no column member_id/);
    } finally {
      await worker.close(5_000);
      await closeDeps(other);
    }
    const written = [];
    for await (const o of deps.objects.list(`exports/${tenant.id}/`)) written.push(o.key);
    expect(written).toEqual([]);
    expect(
      await new ExportRecords(deps.control.pool, deps.prefix).list({ tenant: tenant.id, limit: 10 }),
    ).toEqual([]);
  });

  test('without a backup master key the export fails at once, naming it; nothing written', async ({
    tenant,
    client,
    deps,
  }) => {
    const env = loadEnv({ ...process.env, DBFLEET_PREFIX: deps.prefix, DBFLEET_BACKUP_KEYS: undefined });
    const keyless = createDeps(env, demoConfig, createLogger('silent'));
    const worker = startFleetWorker(keyless, { handlers, queues: ['export-subject'] });
    try {
      const job = await client.enqueue('export-subject', { tenant: tenant.id, subject: { id: ADA.id } });
      const queue = client.queue('export-subject');
      await eventually(async () => (await queue.getJobState(job.id)) === 'failed');
      const failed = (await queue.getJob(job.id))!;
      expect(failed.attemptsMade).toBe(1);
      expect(failed.failedReason).toMatch(/^\[no_backup_key\] no backup master key is configured/);
    } finally {
      await worker.close(5_000);
      await closeDeps(keyless);
    }
    expect(
      await new ExportRecords(deps.control.pool, deps.prefix).list({ tenant: tenant.id, limit: 10 }),
    ).toEqual([]);
  });

  test('no personal value in the finished job in Redis, the audit rows, the export record or the worker log', async ({
    deps,
    tenant,
    client,
    spawnWorker,
  }) => {
    await prepare(deps, tenant);
    const worker = await spawnWorker();
    const job = await client.enqueue('export-subject', { tenant: tenant.id, subject: { id: ADA.id } });
    const result = await job.waitForResult({ timeoutMs: 60_000 });
    expect(result.records).toBe(14);

    const queue = client.queue('export-subject');
    const jobKey = `${deps.prefix}:export-subject:${job.id}`;
    // The subject is overwritten in the job's data once it has finished.
    await eventually(async () => (await queue.getJob(job.id))?.data.redacted === true);
    const stored = JSON.stringify(await deps.redis.hgetall(jobKey));
    const audit = await eventually(async () => {
      const { rows } = await deps.control.pool.query<{ j: string; status: string }>(
        `SELECT row_to_json(e)::text AS j, status FROM dbfleet.job_events e WHERE prefix = $1 AND queue = 'export-subject'`,
        [deps.prefix],
      );
      return rows.some((r) => r.status === 'completed') && rows;
    });
    const record = (
      await deps.control.pool.query<{ j: string }>(
        `SELECT row_to_json(x)::text AS j FROM dbfleet.subject_exports x WHERE prefix = $1`,
        [deps.prefix],
      )
    ).rows;
    expect(record).toHaveLength(1);
    const log = worker.output();
    expect(log).toContain('subject export written');
    for (const [where, text] of [
      ['the job in Redis', stored],
      ['the audit rows', JSON.stringify(audit)],
      ['the export record', JSON.stringify(record)],
      ['the worker log', log],
    ] as const)
      for (const value of ADA_VALUES) expect(text, `${value} in ${where}`).not.toContain(value);
    // The checkpoint (times, wrapped key, outcome) neither.
    const checkpoint = (await deps.redis.get(`${deps.prefix}:dbfleet:run:${job.runId}`)) ?? '';
    expect(checkpoint).toContain(result.exportId);
    for (const value of ADA_VALUES) expect(checkpoint).not.toContain(value);
  });
});
