/**
 * `dbfleet export-subject <tenant> <subject-id>` (a job) and `dbfleet exports list|open|key|expire`,
 * which run in this process against the export records and the object store.
 */
import type { Command } from 'commander';
import { MAX_EXPIRES_SECONDS } from '../../queues/export-subject.ts';
import type { ExportRow } from '../erase/export-records.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { withDeps } from './bootstrap.ts';
import { enqueueAndMaybeWait, print } from './enqueue.ts';

const summary = (e: ExportRow) => ({
  export: e.export_id,
  tenant: e.tenant,
  requestedBy: e.requested_by,
  destination: e.destination,
  createdAt: e.created_at.toISOString(),
  expiresAt: e.expires_at.toISOString(),
  state: e.deleted_at ? 'deleted' : e.records === null ? 'incomplete' : 'ready',
  deletedAt: e.deleted_at?.toISOString() ?? null,
  records: e.records === null ? null : Number(e.records),
  bytes: e.stored_bytes === null ? null : Number(e.stored_bytes),
  key: e.key_id,
});

/** The export's record, key.json and unwrapped data key; refused once deleted. */
async function openable(deps: FleetDeps, exportId: string) {
  const [{ ExportRecords }, { readKeyFile, unwrapExportKey }] = await Promise.all([
    import('../erase/export-records.ts'),
    import('../erase/export-open.ts'),
  ]);
  const row = await new ExportRecords(deps.control.pool, deps.prefix).get(exportId);
  if (!row) throw new Error(`no export ${exportId} in this deployment's records`);
  if (row.deleted_at)
    throw new Error(`export ${exportId} expired and was deleted at ${row.deleted_at.toISOString()}`);
  const store = row.destination === 'local' ? deps.localObjects : deps.objects;
  const keyFile = await readKeyFile(store, row.tenant, exportId);
  return { row, store, keyFile, dataKey: await unwrapExportKey(keyFile, deps.backupKeys) };
}

export function registerExportCommands(program: Command, int: (v: string) => number): void {
  const seconds = (v: string) => {
    const n = int(v);
    if (n < 60 || n > MAX_EXPIRES_SECONDS) throw new Error(`--expires: 60 to ${MAX_EXPIRES_SECONDS} seconds`);
    return n;
  };
  program
    .command('export-subject')
    .description(
      "export a data subject's data from a tenant, per the personal-data map, as a sealed bundle with an expiring link",
    )
    .argument('<tenant>')
    .argument('<subject-id>', 'the subject, as the map identifies people')
    .option('--local', 'write to the local storage folder (the link is a path) instead of S3')
    .option('--expires <seconds>', 'how long the link and bundle live (60 s to 7 days)', seconds)
    .option('--wait', 'wait for the result, progress on stderr')
    .option('--timeout <ms>', 'with --wait: give up after this long', int, 600_000)
    .action(
      async (
        tenant: string,
        subject: string,
        o: { local?: boolean; expires?: number; wait?: boolean; timeout: number },
      ) => {
        await enqueueAndMaybeWait(
          'export-subject',
          {
            tenant,
            subject: { id: subject },
            destination: o.local ? 'local' : 's3',
            ...(o.expires === undefined ? {} : { expiresInSeconds: o.expires }),
          },
          o,
        );
      },
    );

  const exports = program.command('exports').description('subject exports: list, open, hand over, expire');
  exports
    .command('list')
    .description('exports recorded, newest first')
    .option('--tenant <tenant>')
    .option('--subject <id>', "a subject's exports (found by its keyed hash; needs --tenant)")
    .option('--limit <n>', 'at most this many', int, 100)
    .action((o: { tenant?: string; subject?: string; limit: number }) =>
      withDeps(async (deps) => {
        const { ExportRecords } = await import('../erase/export-records.ts');
        const { requireLedgerKeys } = await import('../erase/ledger-keys.ts');
        if (o.subject && !o.tenant) throw new Error('--subject needs --tenant: subjects are per tenant');
        const keys = o.subject ? requireLedgerKeys(deps.ledgerKeys) : undefined;
        const rows = await new ExportRecords(deps.control.pool, deps.prefix).list({
          tenant: o.tenant,
          subjectHashes: keys && keys.keyIds.map((k) => keys.subjectHash(o.tenant!, o.subject!, k)),
          limit: o.limit,
        });
        print(rows.map(summary));
      }),
    );
  exports
    .command('open')
    .description(
      "decrypt and check an export's bundle, and write its files (manifest.json, <store>/<name>.json) into a new folder",
    )
    .argument('<export-id>')
    .requiredOption('--out <dir>', 'a folder that does not exist yet, or is empty')
    .action((exportId: string, o: { out: string }) =>
      withDeps(async (deps) => {
        const { openBundle } = await import('../erase/export-open.ts');
        const { store, keyFile, dataKey } = await openable(deps, exportId);
        const manifest = await openBundle(store, keyFile, dataKey, o.out);
        print({
          export: exportId,
          out: o.out,
          files: manifest.files.map((f) => ({ path: f.path, records: f.records, bytes: f.bytes })),
        });
      }),
    );
  exports
    .command('key')
    .description(
      "the export's own data key, to hand to the person by another channel than the link (it opens this bundle only; docs/export-format.md)",
    )
    .argument('<export-id>')
    .action((exportId: string) =>
      withDeps(async (deps) => {
        const { keyFile, dataKey } = await openable(deps, exportId);
        print({ export: exportId, name: keyFile.object.name, key: dataKey.toString('base64') });
      }),
    );
  exports
    .command('expire')
    .description('delete the bundles of every export past its expiry, and mark them deleted')
    .action(() =>
      withDeps(async (deps) => {
        const { expireExports } = await import('../erase/export-expire.ts');
        const out = await expireExports(deps);
        print(out);
        if (out.failed.length) process.exitCode = 1;
      }),
    );
}
