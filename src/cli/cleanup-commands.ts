/**
 * `dbfleet cleanup <tenant>`, `dbfleet backups prune <tenant>`, `dbfleet archives list|open`.
 * Policy names are checked against the config module before anything is enqueued.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { once } from 'node:events';
import { link, rm } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadConfig } from '../config/define.ts';
import { loadEnv } from '../config/env.ts';
import type { RetentionPolicy } from '../cleanup/policies.ts';
import { selectPolicies } from '../cleanup/run-cleanup.ts';
import { withDeps } from './bootstrap.ts';
import { enqueueAndMaybeWait, print } from './enqueue.ts';

async function configuredPolicies(): Promise<RetentionPolicy[]> {
  return (await loadConfig(loadEnv().DBFLEET_CONFIG)).retention ?? [];
}

function backupsPolicy(policies: RetentionPolicy[], name?: string) {
  const candidates = policies.filter(
    (p): p is Extract<RetentionPolicy, { store: 'backups' }> =>
      p.store === 'backups' && (!name || p.name === name),
  );
  if (candidates.length === 0)
    throw new Error(
      name
        ? `no backups policy named ${name} in the config module`
        : 'the config module has no backups policy',
    );
  if (candidates.length > 1) throw new Error('several backups policies: name one with --policy');
  return candidates[0]!;
}

export function registerCleanupCommands(program: Command, int: (v: string) => number): void {
  const collect = (v: string, all: string[] = []) => [...all, v];
  program
    .command('cleanup')
    .description("apply a tenant's retention policies in short batches (all of them, or those named)")
    .argument('<tenant>')
    .option('--policy <name>', 'only this policy (repeatable)', collect)
    .option('--dry-run', 'count what would go, and the oldest and newest of it; change nothing')
    .option('--wait', 'wait for the result, progress on stderr')
    .option('--timeout <ms>', 'with --wait: give up after this long', int, 3_600_000)
    .action(
      async (tenant: string, o: { policy?: string[]; dryRun?: boolean; wait?: boolean; timeout: number }) => {
        selectPolicies(await configuredPolicies(), o.policy);
        await enqueueAndMaybeWait(
          'cleanup',
          { tenant, dryRun: Boolean(o.dryRun), ...(o.policy ? { policies: o.policy } : {}) },
          o,
        );
      },
    );

  const backups = program.commands.find((c) => c.name() === 'backups');
  if (!backups) throw new Error('register the backup commands before the cleanup commands');
  backups
    .command('prune')
    .description(
      "thin a tenant's backups by its backups policy (grandfather-father-son); --plan explains each, --confirm deletes",
    )
    .argument('<tenant>')
    .option('--policy <name>', 'the backups policy to apply, when the config has several')
    .option('--plan', 'print the plan, backup by backup, and change nothing')
    .option('--confirm', 'delete what the plan does not keep (as an audited cleanup job, waited for)')
    .option('--timeout <ms>', 'with --confirm: give up waiting after this long', int, 3_600_000)
    .action((tenant: string, o: { policy?: string; plan?: boolean; confirm?: boolean; timeout: number }) =>
      withDeps(async (deps) => {
        if (o.plan && o.confirm) throw new Error('--plan only prints; --confirm deletes: give one of them');
        const policy = backupsPolicy(deps.config.retention ?? [], o.policy);
        if (!(await deps.control.tenantExists(tenant))) throw new Error(`unknown tenant ${tenant}`);
        if (o.confirm && !o.plan) {
          await enqueueAndMaybeWait(
            'cleanup',
            { tenant, policies: [policy.name] },
            { wait: true, timeout: o.timeout },
          );
          return;
        }
        const { BackupCatalog } = await import('../backup/catalog.ts');
        const { planPrune, rulesOf } = await import('../backup/prune.ts');
        const plan = await planPrune(
          new BackupCatalog(deps.control.pool, deps.prefix),
          tenant,
          rulesOf(policy),
          new Date(),
        );
        print(
          plan.map(({ row, plan: p }) => ({
            backup: row.backup_id,
            startedAt: row.started_at.toISOString(),
            state: row.state,
            verified: row.verify_result === 'ok',
            action: row.state === 'deleted' ? 'gone' : p.keep ? 'keep' : 'delete',
            why: p.reasons,
          })),
        );
        if (!o.plan) {
          console.error('a plan only: nothing was deleted; add --confirm to delete what it does not keep');
          process.exitCode = 2;
        }
      }),
    );

  const archives = program.command('archives').description('what cleanup policies archived before deleting');
  archives
    .command('list')
    .argument('<tenant>')
    .description("a tenant's archives: run, policy, batches")
    .action((tenant: string) =>
      withDeps(async (deps) => {
        const { archivePrefix } = await import('../cleanup/archive.ts');
        const found = new Map<string, { run: string; policy: string; batches: number; bytes: number }>();
        for await (const ob of deps.objects.list(archivePrefix(tenant))) {
          const [run, policy, file] = ob.key.slice(archivePrefix(tenant).length).split('/');
          if (!run || !policy || !file) continue;
          const entry = found.get(`${run}/${policy}`) ?? { run, policy, batches: 0, bytes: 0 };
          if (file.endsWith('.ndjson.gz')) entry.batches++;
          entry.bytes += ob.size;
          found.set(`${run}/${policy}`, entry);
        }
        print([...found.values()]);
      }),
    );
  archives
    .command('open')
    .argument('<tenant>')
    .argument('<run-id>')
    .argument('<policy>')
    .requiredOption(
      '--out <file>',
      'where to write the rows, one JSON line each (a collection: Extended JSON)',
    )
    .description(
      'decrypt an archive into a file load-fixtures loads (.ndjson for a table, .ejson for a collection)',
    )
    .action((tenant: string, runId: string, policy: string, o: { out: string }) =>
      withDeps(async (deps) => {
        const { archivePrefix, readArchive } = await import('../cleanup/archive.ts');
        const { assertIdentifier, assertTenantId } = await import('../stores/identifiers.ts');
        assertTenantId(tenant);
        assertIdentifier(policy, 'policy');
        if (!/^[A-Za-z0-9:._-]{1,200}$/.test(runId)) throw new Error('not a run id');
        if (!deps.backupKeys) throw new Error('no backup master key is configured (DBFLEET_BACKUP_KEYS)');
        // Nothing at --out unless every batch authenticated, and nothing there overwritten.
        if (existsSync(o.out)) throw new Error(`${o.out} exists: not overwritten`);
        const prefix = archivePrefix(tenant, runId, policy);
        if (!(await deps.objects.head(`${prefix}key.json`)))
          throw new Error(`no archive at ${deps.objects.location}/${prefix} (see archives list ${tenant})`);
        const partial = `${o.out}.partial`;
        const out = createWriteStream(partial, { flags: 'wx' });
        let lines = 0;
        try {
          for await (const batch of readArchive(deps.objects, deps.backupKeys, prefix)) {
            for (const line of batch.lines) if (!out.write(`${line}\n`)) await once(out, 'drain');
            lines += batch.lines.length;
          }
          out.end();
          await once(out, 'finish');
          // link, not rename: it fails rather than replace a file that appeared meanwhile.
          await link(partial, o.out);
          await rm(partial);
        } catch (err) {
          out.destroy();
          await rm(partial, { force: true });
          throw err;
        }
        print({ archive: archivePrefix(tenant, runId, policy), out: o.out, rows: lines });
      }),
    );
}
