/**
 * Cleanup of what is not a tenant table: the fleet's own records about the tenant, objects under a
 * prefix, expired exports, and backups thinned grandfather-father-son. One tenant's policies never
 * reach another tenant's records, objects or backups.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect } from 'vitest';
import { BackupCatalog } from '../src/backup/catalog.ts';
import { manifestKey } from '../src/backup/layout.ts';
import { defineConfig } from '../src/config/define.ts';
import { test, uniqueId } from './support/fixtures.ts';
import { cliFor } from './support/cli.ts';

const DAY = 86_400_000;

describe('control records', () => {
  test.override({
    config: defineConfig({
      retention: [
        { name: 'audit', store: 'control', records: 'audit_events', olderThanDays: 30 },
        { name: 'rejections', store: 'control', records: 'load_rejections', olderThanDays: 30 },
      ],
    }),
  });

  test("a tenant's audit events and load rejections past N days go; younger ones and other tenants' stay", async ({
    deps,
    tenant,
    client,
    startWorker,
  }) => {
    const other = uniqueId('t');
    const now = Date.now();
    const ages = [400, 90, 31, 29, 1]; // days
    for (const who of [tenant.id, other])
      for (const [i, age] of ages.entries()) {
        await deps.control.pool.query(
          `INSERT INTO dbfleet.job_event_log (prefix, queue, job_id, tenant, payload_digest, status, attempt, recorded_ms)
           VALUES ($1, 'migrate', $2, $3, 'sha256:00', 'completed', 1, $4)`,
          [deps.prefix, `old-${who}-${i}`, who, now - age * DAY],
        );
        await deps.control.pool.query(
          `INSERT INTO dbfleet.load_rejections (prefix, job_id, run_id, tenant, line, reason, created_at)
           VALUES ($1, $2, $2, $3, 1, 'x: Required', now() - make_interval(days => $4))`,
          [deps.prefix, `load-${who}-${i}`, who, age],
        );
      }
    const left = async (who: string) => {
      const { rows } = await deps.control.pool.query<{ a: string; r: string }>(
        `SELECT (SELECT count(*) FROM dbfleet.job_event_log WHERE prefix = $1 AND tenant = $2 AND job_id LIKE 'old-%') AS a,
                (SELECT count(*) FROM dbfleet.load_rejections WHERE prefix = $1 AND tenant = $2) AS r`,
        [deps.prefix, who],
      );
      return { audit: Number(rows[0]!.a), rejections: Number(rows[0]!.r) };
    };
    startWorker();
    const dry = await (await client.enqueue('cleanup', { tenant: tenant.id, dryRun: true })).waitForResult();
    expect(dry.policies.map((p) => [p.name, p.matched, p.deleted])).toEqual([
      ['audit', 3, 0],
      ['rejections', 3, 0],
    ]);
    expect(Date.parse(dry.policies[0]!.oldest!)).toBe(now - 400 * DAY);
    expect(Date.parse(dry.policies[0]!.newest!)).toBe(now - 31 * DAY);
    expect(await left(tenant.id)).toEqual({ audit: 5, rejections: 5 });

    const real = await (await client.enqueue('cleanup', { tenant: tenant.id })).waitForResult();
    expect(real.policies.map((p) => [p.name, p.matched, p.deleted])).toEqual([
      ['audit', 3, 3],
      ['rejections', 3, 3],
    ]);
    expect(await left(tenant.id)).toEqual({ audit: 2, rejections: 2 });
    expect(await left(other)).toEqual({ audit: 5, rejections: 5 });
    await deps.control.pool.query('DELETE FROM dbfleet.load_rejections WHERE prefix = $1', [deps.prefix]);
  });
});

describe('objects and exports', () => {
  test.override({
    config: defineConfig({
      retention: [
        { name: 'scratch', store: 'objects', prefix: 'scratch/{tenant}/', olderThanDays: 0 },
        { name: 'scratch_week', store: 'objects', prefix: 'scratch/{tenant}/', olderThanDays: 7 },
        { name: 'exports', store: 'exports' },
        { name: 'archives', store: 'archives', olderThanDays: 0 },
      ],
    }),
  });

  test("objects under the tenant's prefix written before the cutoff go, and expired exports; nothing of another tenant", async ({
    deps,
    tenant,
    client,
    startWorker,
  }) => {
    const other = `${tenant.id}x`; // a prefix of the tenant's own: must not be reached
    const keys = (who: string) => Array.from({ length: 1_203 }, (_, i) => `scratch/${who}/part-${i}`);
    for (const who of [tenant.id, other]) {
      const all = keys(who);
      for (let i = 0; i < all.length; i += 50)
        await Promise.all(all.slice(i, i + 50).map((k) => deps.objects.put(k, 'tmp')));
    }
    // An export past its expiry, one not yet.
    for (const [id, expires] of [
      ['e-expired', new Date(Date.now() - DAY)],
      ['e-live', new Date(Date.now() + DAY)],
    ] as const) {
      await deps.objects.put(`exports/${tenant.id}/${id}/bundle`, 'sealed');
      await deps.objects.put(`exports/${tenant.id}/${id}/key.json`, '{}');
      await deps.control.pool.query(
        `INSERT INTO dbfleet.subject_exports (prefix, export_id, tenant, subject_hash, destination, object_key, expires_at)
         VALUES ($1, $2, $3, 'h', 's3', $4, $5)`,
        [deps.prefix, id, tenant.id, `exports/${tenant.id}/${id}/bundle`, expires],
      );
    }
    // Two runs' archives of the tenant; one of the tenant whose id starts with this one's.
    for (const who of [tenant.id, other])
      for (const run of ['run-1', 'run-2'])
        for (const file of ['key.json', '00000000.ndjson.gz'])
          await deps.objects.put(`archives/${who}/${run}/old_events/${file}`, 'x');
    const listed = async (prefix: string) => {
      const out: string[] = [];
      for await (const o of deps.objects.list(prefix)) out.push(o.key);
      return out.sort();
    };
    startWorker();
    const dry = await (await client.enqueue('cleanup', { tenant: tenant.id, dryRun: true })).waitForResult();
    expect(dry.policies.map((p) => [p.name, p.matched])).toEqual([
      ['scratch', 1_203],
      ['scratch_week', 0],
      ['exports', 1],
      ['archives', 2],
    ]);
    const real = await (await client.enqueue('cleanup', { tenant: tenant.id })).waitForResult();
    expect(real.policies.map((p) => [p.name, p.matched, p.deleted, p.batches])).toEqual([
      ['scratch', 1_203, 1_203, 2],
      ['scratch_week', 0, 0, 0],
      ['exports', 1, 1, 1],
      ['archives', 2, 2, 2],
    ]);
    expect(await listed(`archives/${tenant.id}/`)).toEqual([]);
    expect(await listed(`archives/${other}/`)).toHaveLength(4);
    expect(await listed(`scratch/${tenant.id}/`)).toEqual([]);
    expect(await listed(`scratch/${other}/`)).toEqual(keys(other).sort());
    expect(await listed(`exports/${tenant.id}/`)).toEqual([
      `exports/${tenant.id}/e-live/bundle`,
      `exports/${tenant.id}/e-live/key.json`,
    ]);
    for (const k of [...keys(other), ...(await listed(`exports/${tenant.id}/`))])
      await deps.objects.delete(k);
  });
});

describe('backups, grandfather-father-son', () => {
  const policy = {
    name: 'backups',
    store: 'backups' as const,
    keep: { daily: 3, weekly: 2, monthly: 2 },
    timeZone: 'Europe/Paris',
  };
  test.override({ config: defineConfig({ retention: [policy] }) });

  test("the plan is applied to one tenant's backups: kept ones stay whole, the newest verified survives, another tenant's are untouched", async ({
    deps,
    env,
    tmp,
    tenant,
    spareTenant,
    client,
    startWorker,
  }) => {
    const bystander = await spareTenant();
    const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
    // Nightly at 01:30 Paris for 70 days up to yesterday; the only verified one is 60 days old.
    const seed = async (who: string) => {
      const ids: string[] = [];
      for (let d = 70; d >= 1; d--) {
        const id = `${who}-d${String(d).padStart(2, '0')}`;
        await catalog.start({
          backupId: id,
          tenant: who,
          runId: id,
          destination: 's3',
          manifestKey: manifestKey(who, id),
          keyId: null,
        });
        await catalog.complete(id, { objects: 2, records: 1, storedBytes: 10 });
        const at = new Date(Date.now() - d * DAY);
        await deps.control.pool.query(
          `UPDATE dbfleet.backups SET started_at = $3, verify_result = $4 WHERE prefix = $1 AND backup_id = $2`,
          [deps.prefix, id, at, d === 60 ? 'ok' : null],
        );
        await deps.objects.put(manifestKey(who, id), '{}');
        await deps.objects.put(`backups/${who}/${id}/postgres/users.zst`, 'x');
        ids.push(id);
      }
      return ids;
    };
    await seed(tenant.id);
    const theirs = await seed(bystander.id);

    // The plan, backup by backup, from the CLI.
    const config = path.join(tmp, 'prune.config.ts');
    await writeFile(config, `export default ${JSON.stringify({ retention: [policy] })};\n`);
    const cli = cliFor(env, { DBFLEET_CONFIG: config });
    const { stdout } = await cli('backups', 'prune', tenant.id, '--plan');
    const plan = JSON.parse(stdout) as { backup: string; action: string; why: string[] }[];
    expect(plan).toHaveLength(70);
    const keep = plan.filter((p) => p.action === 'keep');
    expect(keep.find((p) => p.backup === `${tenant.id}-d60`)?.why).toContain('newest verified');
    expect(keep.find((p) => p.backup === `${tenant.id}-d01`)?.why[0]).toMatch(/^daily \d{4}-\d{2}-\d{2}$/);
    for (const p of plan.filter((x) => x.action === 'delete')) expect(p.why).toEqual(['in no kept bucket']);
    // Without --plan or --confirm: the plan, exit 2, nothing deleted.
    await expect(cli('backups', 'prune', tenant.id)).rejects.toMatchObject({ code: 2 });
    await expect(cli('backups', 'prune', tenant.id, '--plan', '--confirm')).rejects.toMatchObject({
      stderr: expect.stringContaining('give one of them'),
    });
    await expect(cli('backups', 'prune', 'nosuchtenant', '--plan')).rejects.toMatchObject({
      stderr: expect.stringContaining('unknown tenant nosuchtenant'),
    });

    startWorker();
    const result = await (await client.enqueue('cleanup', { tenant: tenant.id })).waitForResult();
    const doomed = plan.filter((p) => p.action === 'delete').map((p) => p.backup);
    expect(result.policies[0]).toMatchObject({
      name: 'backups',
      matched: doomed.length,
      deleted: doomed.length,
      kept: keep.length,
    });
    const rows = await catalog.list(tenant.id);
    expect(
      rows
        .filter((r) => r.state === 'complete')
        .map((r) => r.backup_id)
        .sort(),
    ).toEqual(keep.map((p) => p.backup).sort());
    for (const r of rows) {
      const objects: string[] = [];
      for await (const o of deps.objects.list(`backups/${tenant.id}/${r.backup_id}/`)) objects.push(o.key);
      expect(objects.length, r.backup_id).toBe(r.state === 'deleted' ? 0 : 2);
    }
    const bystanderRows = await catalog.list(bystander.id);
    expect(bystanderRows.map((r) => [r.backup_id, r.state]).sort()).toEqual(
      theirs.map((id) => [id, 'complete']).sort(),
    );
  });
});
