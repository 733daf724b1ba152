/**
 * Restores keep erased people erased: every erasure the ledger holds for the backup's tenant that
 * the backup may predate is applied again to the staged data, before it is swapped in. The
 * ledger's sealed subject ids are opened here and nowhere else. The map is resolved leniently: a
 * table or column an older backup does not have cannot hold anyone's data.
 */
import type { Db } from 'mongodb';
import type pg from 'pg';
import type { Logger } from '../logger.ts';
import { PermanentError } from '../errors.ts';
import { inTransaction, withPoolClient } from '../stores/postgres.ts';
import { eraseMongoLocation, erasePostgres } from './apply.ts';
import { verifyAll } from './erase-subject.ts';
import { sealBinding, type ErasureLedger } from './ledger.ts';
import { requireLedgerKeys, type LedgerKeys } from './ledger-keys.ts';
import type { PersonalDataLocation } from './map.ts';
import { resolveMap, type MapTarget } from './resolve.ts';

export interface StagedTarget {
  pool: pg.Pool;
  /** The staged PostgreSQL schema (absent when the backup holds no PostgreSQL data). */
  schema: string;
  mongo: Db;
  /** The staged collection of a mapped collection. */
  collection(name: string): string;
}

export interface Reapplied {
  /** Subjects erased again. */
  subjects: number;
  /** The ledger entries applied. */
  erasureIds: string[];
}

/**
 * Applies the source tenant's erasures (those the backup may still hold: see ErasureLedger.toReapply)
 * to the restored data, except the ones in `exclude` (applied already, by an earlier step).
 */
export async function reapplyErasures(
  o: {
    ledger: ErasureLedger;
    keys: LedgerKeys | undefined;
    map: readonly PersonalDataLocation[];
    /** The backup's tenant: subject ids are the tenant's own, so only its erasures apply. */
    tenant: string;
    log: Logger;
  },
  staged: StagedTarget,
  backup: { since: Date; exclude: readonly string[] },
): Promise<Reapplied> {
  const exclude = new Set(backup.exclude);
  const rows = (await o.ledger.toReapply(o.tenant, backup.since)).filter((r) => !exclude.has(r.erasure_id));
  if (rows.length === 0) return { subjects: 0, erasureIds: [] };
  // Erasures are on record and cannot be read: restoring would bring those people back.
  const keys = requireLedgerKeys(o.keys);
  const subjects = new Map<string, { subjectId: string; keyId: string }>();
  for (const r of rows) {
    const subjectId = keys.open(r.subject_sealed, sealBinding(r.erasure_id, r.tenant), r.key_id);
    subjects.set(subjectId, { subjectId, keyId: r.key_id });
  }
  return withPoolClient(staged.pool, async (client) => {
    const target: MapTarget = {
      pg: client,
      schema: staged.schema,
      mongo: staged.mongo,
      collection: staged.collection,
    };
    const map = await resolveMap(o.map, target, { tenant: o.tenant, lenient: true });
    if (map.skipped.length)
      o.log.info({ skipped: map.skipped }, 'erasures re-applied without locations the backup lacks');
    let left = 0;
    for (const s of subjects.values()) {
      const src = { key: keys.key('pseudonym', s.keyId), tenant: o.tenant, subjectId: s.subjectId };
      await inTransaction(client, () => erasePostgres(map, target, src));
      for (const loc of map.mongo) await eraseMongoLocation(loc, map, target, src);
      const remaining = await verifyAll(map, target, src);
      left += Object.values(remaining).reduce((a, b) => a + b, 0);
    }
    if (left > 0)
      throw new PermanentError(
        'erasure_not_reapplied',
        `${left} rows of erased subjects remain in the restored data after the ledger was applied`,
      );
    return { subjects: subjects.size, erasureIds: rows.map((r) => r.erasure_id) };
  });
}
