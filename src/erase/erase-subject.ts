/**
 * One data subject's erasure in one tenant: the map checked against the tenant's schema, the request
 * recorded in the ledger, PostgreSQL changed in one transaction, MongoDB location by location, then
 * the verify pass. Checkpointed so a crash resumes: the PostgreSQL counts are checkpointed before
 * the transaction commits (a retry that finds the work committed reports them, not zero), and each
 * collection's count of what it had to change before it is changed.
 * Runs under the tenant's migration lock, shared: beside backups and other erasures, never during a
 * migration or a restore (which would swap in data this erasure never saw).
 */
import type { Db } from 'mongodb';
import type pg from 'pg';
import type { Result } from '../../queues/index.ts';
import { PermanentError, TransientError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { withPostgresTenantLock, type LockSettings } from '../migrations/tenant-locks.ts';
import type { Checkpoint } from '../runtime/checkpoint.ts';
import { inTransaction, type TenantPostgres } from '../stores/postgres.ts';
import type { PseudonymSource } from './anonymise.ts';
import {
  countMongoLocation,
  countPostgres,
  eraseMongoLocation,
  erasePostgres,
  type Counts,
} from './apply.ts';
import { sealBinding, type ErasureLedger, type LocationOutcome } from './ledger.ts';
import type { LedgerKeys } from './ledger-keys.ts';
import type { PersonalDataLocation } from './map.ts';
import { resolveMap, type MapTarget, type ResolvedLocation, type ResolvedMap } from './resolve.ts';

export type EraseOutcome = Result<'erase'>;

export interface EraseRequest {
  tenant: string;
  subjectId: string;
  runId: string;
  dryRun: boolean;
  requestedBy: string | undefined;
}

export interface EraseServices {
  map: readonly PersonalDataLocation[];
  target: { postgres: TenantPostgres; mongo: Db };
  keys: LedgerKeys;
  ledger: ErasureLedger;
  checkpoint: Checkpoint;
  progress(p: {
    phase: 'postgres' | 'mongo' | 'verify';
    locations: number;
    locationsTotal: number;
  }): Promise<void>;
  throwIfInterrupted(): void;
  log: Logger;
  locks: LockSettings;
}

interface EraseCheckpoint {
  keyId: string;
  /** Written before the PostgreSQL transaction commits. */
  postgresPending?: Counts;
  postgres?: Counts;
  /** Per collection: what it had to change when first reached, and what was changed. */
  mongo: Record<string, { before: number; done?: number }>;
  outcome?: EraseOutcome;
}

export async function eraseSubject(req: EraseRequest, s: EraseServices): Promise<EraseOutcome> {
  // With no map, nothing says where anyone's data is: "erased, verified" would be a false record.
  if (s.map.length === 0)
    throw new PermanentError(
      'no_personal_data_map',
      'the config module has no personalData map: nothing says where a data subject is, so nothing can be erased',
    );
  const cp: EraseCheckpoint = (await s.checkpoint.get<EraseCheckpoint>()) ?? {
    keyId: s.keys.currentId,
    mongo: {},
  };
  if (cp.outcome) return cp.outcome;
  const src: PseudonymSource = {
    key: s.keys.key('pseudonym', cp.keyId),
    tenant: req.tenant,
    subjectId: req.subjectId,
  };
  const schema = s.target.postgres.schema;
  return s.target.postgres.withClient((client) =>
    withPostgresTenantLock(client, schema, 'shared', s.locks.waitMs, async () => {
      const target: MapTarget = { pg: client, schema, mongo: s.target.mongo };
      // Before anything is recorded or changed: a map that does not fit fails here, naming why.
      const map = await resolveMap(s.map, target, { tenant: req.tenant });
      const total = map.postgres.length + map.mongo.length;
      if (req.dryRun) {
        // What an erase would change is what the verify pass would find left: one reading.
        const counts = await verifyAll(map, target, src);
        const outcome = outcomeOf(map, counts, counts, null, true);
        await s.checkpoint.finish({ ...cp, outcome });
        return outcome;
      }
      const erasureId = req.runId;
      await s.ledger.begin({
        erasureId,
        tenant: req.tenant,
        requestedBy: req.requestedBy,
        subjectHash: s.keys.subjectHash(req.tenant, req.subjectId, cp.keyId),
        subjectSealed: s.keys.seal(req.subjectId, sealBinding(erasureId, req.tenant), cp.keyId),
        keyId: cp.keyId,
      });
      await s.checkpoint.set(cp);
      let counts = await erasePass(map, target, src, cp, s);
      let remaining = await verifyAll(map, target, src);
      if (Object.values(remaining).some((n) => n > 0)) {
        // Rows the app wrote for the subject while the erasure ran: one more pass takes them.
        const left = Object.keys(remaining).filter((k) => remaining[k]! > 0);
        s.log.warn({ locations: left }, 'the verify pass found rows left; erasing once more');
        const more = await erasePass(
          map,
          target,
          src,
          { keyId: cp.keyId, mongo: {} },
          { ...s, checkpoint: noCheckpoint },
        );
        counts = Object.fromEntries(Object.entries(counts).map(([k, n]) => [k, n + (more[k] ?? 0)]));
        remaining = await verifyAll(map, target, src);
      }
      await s.progress({ phase: 'verify', locations: total, locationsTotal: total });
      const outcome = outcomeOf(map, counts, remaining, erasureId, false);
      await s.ledger.complete(
        erasureId,
        outcome.locations.map(({ remaining: _, ...l }) => l),
        outcome.verified,
      );
      await s.checkpoint.finish({ ...cp, outcome });
      const { deleted, anonymised, verified } = outcome;
      s.log.info({ erasureId, deleted, anonymised, verified }, 'erasure complete');
      return outcome;
    }),
  );
}

const noCheckpoint: Checkpoint = {
  get: async () => undefined,
  set: async () => undefined,
  finish: async () => undefined,
};

async function erasePass(
  map: ResolvedMap,
  target: MapTarget,
  src: PseudonymSource,
  cp: EraseCheckpoint,
  s: Pick<EraseServices, 'checkpoint' | 'progress' | 'throwIfInterrupted'>,
): Promise<Counts> {
  const total = map.postgres.length + map.mongo.length;
  if (!cp.postgres) {
    const client = target.pg as pg.PoolClient;
    const changed = await inTransaction(client, async () => {
      const now = await erasePostgres(map, target, src).catch((err: unknown) => {
        // The map check rules out keys that always block; this one is a row the app wrote
        // meanwhile, referring to a row being deleted: the next attempt takes it too.
        if ((err as { code?: string }).code === '23503')
          throw new TransientError(
            'erase_raced',
            `a row referring to the subject's rows was written during the erase (${(err as { constraint?: string }).constraint ?? 'a foreign key'}); retrying`,
          );
        throw err;
      });
      // A retry of a transaction that did commit changes nothing: it reports what was recorded.
      const merged: Counts = {};
      for (const k of Object.keys(now)) merged[k] = Math.max(now[k]!, cp.postgresPending?.[k] ?? 0);
      cp.postgresPending = merged;
      await s.checkpoint.set(cp);
      return merged;
    });
    cp.postgres = changed;
    await s.checkpoint.set(cp);
  }
  await s.progress({ phase: 'postgres', locations: map.postgres.length, locationsTotal: total });
  let done = map.postgres.length;
  for (const loc of map.mongo) {
    s.throwIfInterrupted();
    const step = cp.mongo[loc.id];
    if (step?.done === undefined) {
      let before = step?.before ?? 0;
      const changed = await eraseMongoLocation(loc, map, target, src, async (toChange) => {
        // A retry keeps what the first attempt found, before it changed any of it.
        before = step?.before ?? toChange;
        cp.mongo[loc.id] = { before };
        await s.checkpoint.set(cp);
      });
      cp.mongo[loc.id] = { before, done: Math.max(before, changed) };
      await s.checkpoint.set(cp);
    }
    await s.progress({ phase: 'mongo', locations: ++done, locationsTotal: total });
  }
  const counts: Counts = { ...cp.postgres };
  for (const loc of map.mongo) counts[loc.id] = cp.mongo[loc.id]!.done!;
  return counts;
}

export async function verifyAll(map: ResolvedMap, target: MapTarget, src: PseudonymSource): Promise<Counts> {
  const remaining = await countPostgres(map, target, src);
  for (const loc of map.mongo) remaining[loc.id] = await countMongoLocation(loc, map, target, src);
  return remaining;
}

function outcomeOf(
  map: ResolvedMap,
  counts: Counts,
  remaining: Counts,
  erasureId: string | null,
  dryRun: boolean,
): EraseOutcome {
  const locations = [...map.postgres, ...map.mongo].map((l: ResolvedLocation) => ({
    store: l.store,
    name: l.name,
    action: l.action,
    count: counts[l.id] ?? 0,
    remaining: remaining[l.id] ?? 0,
  }));
  const sum = (a: LocationOutcome['action']) =>
    locations.filter((l) => l.action === a).reduce((n, l) => n + l.count, 0);
  return {
    erasureId,
    dryRun,
    deleted: sum('delete'),
    anonymised: sum('anonymise'),
    verified: locations.every((l) => l.remaining === 0),
    locations,
  };
}
