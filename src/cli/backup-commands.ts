/**
 * `dbfleet backup`, `dbfleet restore`, `dbfleet backups list|show|verify|delete` and
 * `dbfleet restores list|drop-replaced`. Backup and restore are jobs (enqueued, optionally waited
 * for with progress on stderr); listing, verifying and deleting run in this process against the
 * catalog and the object store. Anything destructive is a dry run unless --confirm.
 */
import type { Command } from 'commander';
import type { BackupRow } from '../backup/catalog.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { withDeps } from './bootstrap.ts';
import { enqueueAndMaybeWait, print } from './enqueue.ts';

/** A running backup whose heartbeat is quieter than this is taken for abandoned (its worker died). */
export const ABANDONED_AFTER_MS = 15 * 60_000;

function storeOf(deps: FleetDeps, destination: 's3' | 'local'): ObjectStore {
  return destination === 'local' ? deps.localObjects : deps.objects;
}

async function catalogRow(deps: FleetDeps, backupId: string): Promise<BackupRow> {
  const { BackupCatalog } = await import('../backup/catalog.ts');
  const row = await new BackupCatalog(deps.control.pool, deps.prefix).get(backupId);
  if (!row) throw new Error(`no backup ${backupId} in this deployment's catalog`);
  return row;
}

const summary = (b: BackupRow) => ({
  backup: b.backup_id,
  tenant: b.tenant,
  state: b.state,
  started: b.started_at.toISOString(),
  seconds: b.finished_at ? Math.round((b.finished_at.getTime() - b.started_at.getTime()) / 1000) : null,
  objects: b.objects,
  records: b.records === null ? null : Number(b.records),
  bytes: b.stored_bytes === null ? null : Number(b.stored_bytes),
  key: b.key_id ?? '(none)',
  verified: b.verified_at ? `${b.verify_result} at ${b.verified_at.toISOString()}` : null,
  error: b.error_code,
});

export function registerBackupCommands(program: Command, int: (v: string) => number): void {
  program
    .command('backup')
    .description("back up a tenant's PostgreSQL schema and MongoDB database (a backup job)")
    .argument('<tenant>')
    .option('--local', 'write to the local storage folder instead of S3')
    .option('--store <store>', 'only postgres or only mongo')
    .option('--gzip', 'gzip instead of zstd')
    .option('--no-encrypt', 'make the backup without a key, on purpose')
    .option('--wait', 'wait for the result, progress on stderr')
    .option('--timeout <ms>', 'with --wait: give up after this long', int, 6 * 3_600_000)
    .action(
      async (
        tenant: string,
        o: {
          local?: boolean;
          store?: 'postgres' | 'mongo';
          gzip?: boolean;
          encrypt: boolean;
          wait?: boolean;
          timeout: number;
        },
      ) => {
        await enqueueAndMaybeWait(
          'backup',
          {
            tenant,
            destination: o.local ? 'local' : 's3',
            ...(o.store ? { stores: [o.store] } : {}),
            compression: o.gzip ? 'gzip' : 'zstd',
            encrypt: o.encrypt,
          },
          o,
        );
      },
    );

  program
    .command('restore')
    .description('verify a backup whole, then restore it into its tenant or another (a restore job)')
    .argument('<backup-id>')
    .option('--into <tenant>', 'restore into this tenant (new or empty, else --replace)')
    .option('--tenant <tenant>', "the backup's tenant, for a backup this deployment's catalog does not list")
    .option('--local', 'with --tenant: the backup is in the local storage folder')
    .option('--verify-only', 'read, authenticate and count every object; change nothing')
    .option('--replace', 'restore into another tenant that holds data (kept aside, not dropped)')
    .option('--allow-unencrypted', 'accept a backup made without a key')
    .option('--wait', 'wait for the result, progress on stderr')
    .option('--timeout <ms>', 'with --wait: give up after this long', int, 6 * 3_600_000)
    .action(
      async (
        backupId: string,
        o: {
          into?: string;
          tenant?: string;
          local?: boolean;
          verifyOnly?: boolean;
          replace?: boolean;
          allowUnencrypted?: boolean;
          wait?: boolean;
          timeout: number;
        },
      ) => {
        const tenant =
          o.tenant ?? (await withDeps(async (deps) => (await catalogRow(deps, backupId)).tenant));
        await enqueueAndMaybeWait(
          'restore',
          {
            tenant,
            backupId,
            ...(o.into ? { targetTenant: o.into } : {}),
            ...(o.local ? { source: 'local' as const } : o.tenant ? { source: 's3' as const } : {}),
            verifyOnly: Boolean(o.verifyOnly),
            replace: Boolean(o.replace),
            allowUnencrypted: Boolean(o.allowUnencrypted),
          },
          o,
        );
      },
    );

  const backups = program.command('backups').description('the backup catalog');
  backups
    .command('list')
    .description("a tenant's backups, newest first; --incomplete: those that will never complete, any tenant")
    .argument('[tenant]')
    .option('--incomplete', 'failed, or running with no heartbeat for 15 minutes (a crash left them)')
    .action((tenant: string | undefined, o: { incomplete?: boolean }) =>
      withDeps(async (deps) => {
        const { BackupCatalog } = await import('../backup/catalog.ts');
        const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
        if (!o.incomplete && !tenant) throw new Error('name a tenant, or use --incomplete');
        const rows = o.incomplete
          ? await catalog.incomplete(tenant, ABANDONED_AFTER_MS)
          : await catalog.list(tenant!);
        console.table(rows.map(summary));
      }),
    );
  backups
    .command('show')
    .description("a backup's catalog row and, when complete, its manifest's objects")
    .argument('<backup-id>')
    .action((backupId: string) =>
      withDeps(async (deps) => {
        const row = await catalogRow(deps, backupId);
        const { openBackup } = await import('../backup/verify.ts');
        let manifest: unknown = 'no manifest: the backup is incomplete';
        if (row.state === 'complete') {
          const b = await openBackup(storeOf(deps, row.destination), row.tenant, backupId, deps.backupKeys, {
            allowUnsealed: row.key_id === null,
          });
          const { objects, key: _key, ...rest } = b.manifest;
          manifest = {
            ...rest,
            keyId: b.manifest.key?.keyId ?? null,
            objects: objects.map((ob) => ({
              name: ob.name,
              records: ob.records,
              plainBytes: ob.plainBytes,
              storedBytes: ob.storedBytes,
            })),
          };
        }
        print({
          ...summary(row),
          location: `${storeOf(deps, row.destination).location}/${row.manifest_key}`,
          manifest,
        });
      }),
    );
  backups
    .command('verify')
    .description('check a backup without restoring it: manifest and object sizes; --deep reads every object')
    .argument('<backup-id>')
    .option('--deep', 'download, authenticate, decompress and count every object')
    .action((backupId: string, o: { deep?: boolean }) =>
      withDeps(async (deps) => {
        const row = await catalogRow(deps, backupId);
        const [{ openBackup, verifyDeep, verifyQuick }, { BackupCatalog }, { BackupFault }] =
          await Promise.all([
            import('../backup/verify.ts'),
            import('../backup/catalog.ts'),
            import('../backup/fault.ts'),
          ]);
        const catalog = new BackupCatalog(deps.control.pool, deps.prefix);
        try {
          const b = await openBackup(storeOf(deps, row.destination), row.tenant, backupId, deps.backupKeys, {
            allowUnsealed: row.key_id === null,
          });
          await (o.deep ? verifyDeep(b) : verifyQuick(b));
          // Only a deep verify vouches for the bytes; a quick one is not recorded as verified.
          if (o.deep) await catalog.recordVerify(row.tenant, backupId, 'ok');
          print({
            backup: backupId,
            verified: o.deep ? 'deep' : 'quick',
            objects: b.manifest.objects.length,
          });
        } catch (err) {
          if (err instanceof BackupFault) {
            await catalog.recordVerify(row.tenant, backupId, err.fault);
            print({ backup: backupId, fault: err.fault, message: err.message });
            process.exitCode = 1;
            return;
          }
          throw err;
        }
      }),
    );
  backups
    .command('delete')
    .description("delete a backup's objects and mark it deleted; a dry run unless --confirm")
    .argument('<backup-id>')
    .option('--confirm', 'really delete; without it, list what would go and exit 2')
    .action((backupId: string, o: { confirm?: boolean }) =>
      withDeps(async (deps) => {
        const row = await catalogRow(deps, backupId);
        const quietMs = Date.now() - row.updated_at.getTime();
        if (row.state === 'running' && quietMs < ABANDONED_AFTER_MS)
          throw new Error(
            `backup ${backupId} is running (heartbeat ${Math.round(quietMs / 1000)} s ago): not deleted`,
          );
        const store = storeOf(deps, row.destination);
        const prefix = row.manifest_key.slice(0, -'manifest.json'.length);
        const keys: string[] = [];
        for await (const ob of store.list(prefix)) keys.push(ob.key);
        if (!o.confirm) {
          print({
            backup: backupId,
            state: row.state,
            wouldDelete: keys,
            confirm: 'run again with --confirm',
          });
          process.exitCode = 2;
          return;
        }
        const { BackupCatalog } = await import('../backup/catalog.ts');
        const { deleteBackup } = await import('../backup/prune.ts');
        const deleted = await deleteBackup(new BackupCatalog(deps.control.pool, deps.prefix), store, row);
        if (deleted === null)
          throw new Error(`backup ${backupId} changed while this ran (a retry took it up): not deleted`);
        print({ backup: backupId, deleted: keys.length });
      }),
    );

  const restores = program.command('restores').description('restores run, and the data they replaced');
  restores
    .command('list')
    .argument('[tenant]', 'restores into this tenant')
    .action((tenant: string | undefined) =>
      withDeps(async (deps) => {
        const { RestoreRecords } = await import('../backup/restore-records.ts');
        const rows = await new RestoreRecords(deps.control.pool, deps.prefix).list(tenant);
        console.table(
          rows.map((r) => ({
            run: r.run_id,
            backup: r.backup_id,
            from: r.source_tenant,
            into: r.target_tenant,
            state: r.state,
            started: r.started_at.toISOString(),
            replaced: r.replaced_dropped_at
              ? 'dropped'
              : [r.replaced_schema, r.replaced_collections].filter(Boolean).join(' ') || '-',
            erasures: r.erasures_reapplied,
            error: r.error_code,
          })),
        );
      }),
    );
  restores
    .command('drop-replaced')
    .description('drop the data a restore replaced (kept aside until now); a dry run unless --confirm')
    .argument('<run-id>')
    .option('--confirm', 'really drop; without it, say what would go and exit 2')
    .action((runId: string, o: { confirm?: boolean }) =>
      withDeps(async (deps) => {
        const [{ RestoreRecords }, { dropReplaced }] = await Promise.all([
          import('../backup/restore-records.ts'),
          import('../backup/restore-tenant.ts'),
        ]);
        const records = new RestoreRecords(deps.control.pool, deps.prefix);
        const r = await records.get(runId);
        if (!r) throw new Error(`no restore run ${runId} in this deployment`);
        const replaced = { schema: r.replaced_schema, collections: r.replaced_collections };
        if (r.replaced_dropped_at || (!replaced.schema && !replaced.collections))
          return print({ run: runId, replaced: 'nothing to drop' });
        if (!o.confirm) {
          print({
            run: runId,
            tenant: r.target_tenant,
            wouldDrop: replaced,
            confirm: 'run again with --confirm',
          });
          process.exitCode = 2;
          return;
        }
        const at = deps.tenants.locate(r.target_tenant);
        await dropReplaced(
          { pool: deps.postgres.pool(at.postgresUrl), mongo: deps.mongo.db(at.mongoUrl, at.namespace) },
          replaced,
        );
        await records.markDropped(runId);
        print({ run: runId, dropped: replaced });
      }),
    );
}
