/**
 * Archive-before-delete: every row a policy deletes is in its archive, which opens only with the
 * backup keys, and loads back with load-fixtures to the same values.
 */
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { describe, expect } from 'vitest';
import { z } from 'zod';
import { defineConfig } from '../src/config/define.ts';
import { archivePrefix, readArchive } from '../src/cleanup/archive.ts';
import { StaticKeyProvider } from '../src/backup/keys.ts';
import { test } from './support/fixtures.ts';
import { cliFor } from './support/cli.ts';
import { createEvents, digests, events, expired } from './support/retention.ts';

const eventRow = z.object({
  id: z.coerce.number().int(),
  at: z.iso.datetime({ offset: true }),
  kind: z.string(),
  payload: z.string(),
  amount: z.string(),
});

describe.each(['postgres', 'mongo'] as const)('archive before delete on %s', (store) => {
  test.override({
    config: defineConfig({
      fixtures: { events: eventRow },
      retention: [
        {
          name: 'old_events',
          store,
          target: 'events',
          timeField: 'at',
          olderThanDays: 7,
          where: { kind: ['a', 'b'] },
          archive: true,
          batch: { initialSize: 200, minSize: 100, maxSize: 300, pauseMs: 0 },
        },
      ],
    }),
  });

  test('every deleted row is in the archive, which decrypts and reloads with load-fixtures', async ({
    deps,
    env,
    tenant,
    files,
    client,
    startWorker,
  }) => {
    const rows = events(2_000);
    await createEvents(tenant, store, rows);
    await createEvents(tenant, store, [], 'restored');
    const before = await digests(tenant, store);
    const doomed = expired(rows, 7, ['a', 'b']);
    startWorker();

    const job = await client.enqueue('cleanup', { tenant: tenant.id });
    const result = await job.waitForResult({ timeoutMs: 60_000 });
    expect(result.policies[0]).toMatchObject({
      matched: doomed.length,
      deleted: doomed.length,
      archived: doomed.length,
    });
    expect(result.policies[0]!.batches).toBeGreaterThanOrEqual(Math.ceil(doomed.length / 300));

    // Sealed: the objects hold no row in the clear, and another master key opens nothing.
    const prefix = archivePrefix(tenant.id, job.runId, 'old_events');
    for await (const o of deps.objects.list(prefix)) {
      const bytes = Buffer.concat(await (await deps.objects.get(o.key)).toArray());
      expect(bytes.includes(Buffer.from(doomed[0]!.payload))).toBe(false);
    }
    const stranger = new StaticKeyProvider(new Map([['test-1', Buffer.alloc(32, 7)]]));
    await expect(readArchive(deps.objects, stranger, prefix).next()).rejects.toThrow();

    // Opened by the CLI into a file, loaded back into an empty table or collection of the same shape.
    const out = path.join(files, store === 'postgres' ? 'old_events.ndjson' : 'old_events.ejson');
    const cli = cliFor(env);
    const { stdout } = await cli('archives', 'open', tenant.id, job.runId, 'old_events', '--out', out);
    expect(JSON.parse(stdout)).toMatchObject({ rows: doomed.length });
    expect((await readFile(out, 'utf8')).split('\n').length).toBe(doomed.length + 1);
    // Never over a file already there; a run without an archive is named.
    await expect(
      cli('archives', 'open', tenant.id, job.runId, 'old_events', '--out', out),
    ).rejects.toMatchObject({
      stderr: expect.stringContaining('exists: not overwritten'),
    });
    await expect(
      cli('archives', 'open', tenant.id, 'no-such-run', 'old_events', '--out', `${out}.2`),
    ).rejects.toMatchObject({ stderr: expect.stringContaining(`no archive at`) });
    const load = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store, name: 'restored' },
      source: { type: 'file', path: out },
      ...(store === 'postgres' ? { schema: 'events' } : {}),
    });
    expect(await load.waitForResult({ timeoutMs: 60_000 })).toMatchObject({
      loaded: doomed.length,
      rejected: 0,
    });
    const restored = await digests(tenant, store, 'restored');
    expect([...restored.keys()].sort((a, b) => a - b)).toEqual(doomed.map((r) => r.id));
    for (const [id, digest] of restored) expect(digest, `row ${id}`).toBe(before.get(id));
  });
});
