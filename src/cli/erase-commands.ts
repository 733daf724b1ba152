/**
 * `dbfleet erase <tenant> <subject-id>`, `dbfleet erase check-map <tenant>`,
 * `dbfleet erasures list|receipt|verify-receipt`. An erase is a dry run first unless --confirm: the
 * counts per location are shown and nothing changes.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { ErasureRow, Receipt } from '../erase/ledger.ts';
import { withDeps } from './bootstrap.ts';
import { enqueueAndMaybeWait, print } from './enqueue.ts';

const summary = (e: ErasureRow) => ({
  erasure: e.erasure_id,
  tenant: e.tenant,
  state: e.state,
  requestedBy: e.requested_by,
  requestedAt: e.requested_at.toISOString(),
  finishedAt: e.finished_at?.toISOString() ?? null,
  deleted: e.deleted === null ? null : Number(e.deleted),
  anonymised: e.anonymised === null ? null : Number(e.anonymised),
  verified: e.verified,
  error: e.error_code,
});

export function registerEraseCommands(program: Command, int: (v: string) => number): void {
  program
    .command('erase')
    .description(
      "erase a data subject from a tenant per the personal-data map (a dry run unless --confirm); 'erase check-map <tenant>' lists personal-looking fields the map misses",
    )
    .argument('<tenant>', "the tenant (or 'check-map')")
    .argument('<subject-id>', 'the subject, as the map identifies people (with check-map: the tenant)')
    .option('--dry-run', 'only count what would change')
    .option('--confirm', 'erase for real (without it: a dry run, exit 2)')
    .option('--wait', 'wait for the result, progress on stderr (always with a dry run)')
    .option('--timeout <ms>', 'with --wait: give up after this long', int, 600_000)
    .action(
      async (
        tenant: string,
        subject: string,
        o: { dryRun?: boolean; confirm?: boolean; wait?: boolean; timeout: number },
      ) => {
        if (tenant === 'check-map') return checkMap(subject);
        const dryRun = Boolean(o.dryRun) || !o.confirm;
        await enqueueAndMaybeWait(
          'erase',
          { tenant, subject: { id: subject }, dryRun },
          { ...o, wait: o.wait || dryRun },
        );
        if (dryRun && !o.dryRun) {
          console.error('dry run: nothing was changed; add --confirm to erase');
          process.exitCode = 2;
        }
      },
    );

  const erasures = program.command('erasures').description('the erasure ledger');
  erasures
    .command('list')
    .description('erasures recorded, newest first')
    .option('--tenant <tenant>')
    .option('--subject <id>', "a subject's erasures (found by its keyed hash; needs --tenant)")
    .option('--limit <n>', 'at most this many', int, 100)
    .action((o: { tenant?: string; subject?: string; limit: number }) =>
      withDeps(async (deps) => {
        const { ErasureLedger } = await import('../erase/ledger.ts');
        const { requireLedgerKeys } = await import('../erase/ledger-keys.ts');
        if (o.subject && !o.tenant) throw new Error('--subject needs --tenant: subjects are per tenant');
        const keys = o.subject ? requireLedgerKeys(deps.ledgerKeys) : undefined;
        const rows = await new ErasureLedger(deps.control.pool, deps.prefix).list({
          tenant: o.tenant,
          subjectHashes: keys && keys.keyIds.map((k) => keys.subjectHash(o.tenant!, o.subject!, k)),
          limit: o.limit,
        });
        print(rows.map(summary));
      }),
    );
  erasures
    .command('receipt')
    .description("an erasure's receipt: JSON for the person or the data-protection officer, authenticated")
    .argument('<erasure-id>')
    .action((id: string) =>
      withDeps(async (deps) => {
        const { ErasureLedger, receiptOf } = await import('../erase/ledger.ts');
        const { requireLedgerKeys } = await import('../erase/ledger-keys.ts');
        const row = await new ErasureLedger(deps.control.pool, deps.prefix).get(id);
        if (!row) throw new Error(`no erasure ${id} in this deployment's ledger`);
        print(receiptOf(row, requireLedgerKeys(deps.ledgerKeys)));
      }),
    );
  erasures
    .command('verify-receipt')
    .description('check that a receipt was made by this ledger and is unchanged (exit 1 if not)')
    .argument('<file>')
    .action((file: string) =>
      withDeps(async (deps) => {
        const { receiptIsAuthentic } = await import('../erase/ledger.ts');
        const { requireLedgerKeys } = await import('../erase/ledger-keys.ts');
        const receipt = JSON.parse(await readFile(file, 'utf8')) as Receipt;
        const ok = receiptIsAuthentic(receipt, requireLedgerKeys(deps.ledgerKeys));
        print({ erasure: receipt.erasureId, authentic: ok });
        if (!ok) process.exitCode = 1;
      }),
    );
}

async function checkMap(tenant: string): Promise<void> {
  await withDeps(async (deps) => {
    const { discoverUnmapped } = await import('../erase/discover.ts');
    const found = await discoverUnmapped(deps, tenant);
    print(found);
    if (found.problems.length || found.unmapped.length) process.exitCode = 2;
  });
}
