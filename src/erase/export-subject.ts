/**
 * One data subject's export (right of access and portability) from one tenant: the map checked
 * against the tenant's schema, every mapped location read with erasure's own selectors, one sealed
 * bundle written with its wrapped key, the export recorded, and a link that expires.
 *
 * Reads only. PostgreSQL is read in one REPEATABLE READ READ ONLY transaction, under the tenant's
 * migration lock held shared (as erasure and backups hold it): never during a migration or a
 * restore. The run's checkpoint keeps its times and wrapped data key, so a retry writes the same
 * objects again; the reading itself is redone whole, which costs a retry little next to the sense
 * of a bundle that is one consistent reading.
 */
import type { Db } from 'mongodb';
import type { Result } from '../../queues/index.ts';
import { newDataKey, type KeyProvider, type WrappedKey } from '../backup/keys.ts';
import { PermanentError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { withPostgresTenantLock, type LockSettings } from '../migrations/tenant-locks.ts';
import type { Checkpoint } from '../runtime/checkpoint.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { inTransaction, type TenantPostgres } from '../stores/postgres.ts';
import {
  bundleKey,
  exportIdOf,
  locationPath,
  MANIFEST_FORMAT,
  writeBundle,
  type ExportManifest,
  type ManifestFile,
} from './export-bundle.ts';
import { mongoDocuments, postgresRows } from './export-read.ts';
import type { ExportRecords } from './export-records.ts';
import { jsonArray, Spool, type SpooledFile } from './export-spool.ts';
import type { LedgerKeys } from './ledger-keys.ts';
import { locationId, type PersonalDataLocation } from './map.ts';
import { bindSubject, resolveMap, type ResolvedLocation } from './resolve.ts';

export type ExportOutcome = Result<'export-subject'>;

export interface ExportRequest {
  tenant: string;
  subjectId: string;
  runId: string;
  destination: 's3' | 'local';
  expiresInSeconds: number;
  requestedBy: string | undefined;
}

export interface ExportServices {
  map: readonly PersonalDataLocation[];
  target: { postgres: TenantPostgres; mongo: Db };
  /** Where the bundle goes (the destination's store). */
  store: ObjectStore;
  ledgerKeys: LedgerKeys;
  backupKeys: KeyProvider | undefined;
  records: ExportRecords;
  checkpoint: Checkpoint;
  /** The link to hand out: a presigned GET URL, or a local path. */
  link(objectKey: string, validForSeconds: number): Promise<string>;
  progress(p: {
    phase: 'read' | 'write';
    locations: number;
    locationsTotal: number;
    records: number;
  }): Promise<void>;
  throwIfInterrupted(): void;
  log: Logger;
  locks: LockSettings;
  partSizeBytes?: number;
  now?: () => Date;
}

interface ExportCheckpoint {
  createdAt: string;
  expiresAt: string;
  key: WrappedKey;
  outcome?: ExportOutcome;
}

interface ReadLocation {
  loc: ResolvedLocation;
  file: SpooledFile;
  records: number;
}

function expiredError(exportId: string): PermanentError {
  return new PermanentError(
    'export_expired',
    `export ${exportId} reached its expiry before its bundle was complete: enqueue a new export, with a longer expiresInSeconds if it is large`,
  );
}

export async function exportSubject(req: ExportRequest, s: ExportServices): Promise<ExportOutcome> {
  const now = s.now ?? (() => new Date());
  const exportId = exportIdOf(req.runId);
  const saved = await s.checkpoint.get<ExportCheckpoint>();
  if (saved?.outcome) return saved.outcome;
  if (!s.backupKeys)
    throw new PermanentError(
      'no_backup_key',
      'no backup master key is configured (DBFLEET_BACKUP_KEYS): an export bundle is sealed under a data key a master key wraps',
    );
  let cp: ExportCheckpoint;
  let dataKey: Buffer;
  if (saved) {
    cp = saved;
    dataKey = await s.backupKeys.unwrap(cp.key);
  } else {
    const createdAt = now();
    dataKey = newDataKey();
    cp = {
      createdAt: createdAt.toISOString(),
      expiresAt: new Date(createdAt.getTime() + req.expiresInSeconds * 1000).toISOString(),
      key: await s.backupKeys.wrap(dataKey),
    };
    await s.checkpoint.set(cp);
  }
  // A retry this late would hand out a link to a bundle the sweep may be deleting.
  if (now() >= new Date(cp.expiresAt)) throw expiredError(exportId);

  const spool = await Spool.create();
  try {
    const read = await readAll(req, s, exportId, cp, spool);
    const manifest: ExportManifest = {
      format: MANIFEST_FORMAT,
      exportId,
      tenant: req.tenant,
      createdAt: cp.createdAt,
      expiresAt: cp.expiresAt,
      files: read.map((r): ManifestFile => ({
        path: locationPath(r.loc.store, r.loc.name),
        store: r.loc.store,
        name: r.loc.name,
        records: r.records,
        bytes: r.file.bytes,
        sha256: r.file.sha256,
      })),
    };
    const records = read.reduce((n, r) => n + r.records, 0);
    s.throwIfInterrupted();
    const stored = await writeBundle({
      store: s.store,
      manifest,
      files: read.map((r) => r.file),
      dataKey,
      wrapped: cp.key,
      partSizeBytes: s.partSizeBytes,
    });
    const left = Math.floor((new Date(cp.expiresAt).getTime() - now().getTime()) / 1000);
    if (left < 1) {
      // Written after its expiry: a sweep may have missed it, so take it away here.
      await s.store.delete(bundleKey(req.tenant, exportId));
      throw expiredError(exportId);
    }
    await s.records.complete(exportId, records, stored.storedBytes);
    await s.progress({ phase: 'write', locations: read.length, locationsTotal: read.length, records });
    const outcome: ExportOutcome = {
      exportId,
      objectKey: stored.key,
      destination: req.destination,
      link: await s.link(stored.key, left),
      expiresAt: cp.expiresAt,
      bytes: stored.storedBytes,
      keyId: cp.key.keyId,
      locations: read.map((r) => ({ store: r.loc.store, name: r.loc.name, records: r.records })),
      records,
    };
    await s.checkpoint.finish({ ...cp, outcome });
    s.log.info({ exportId, records, bytes: stored.storedBytes }, 'subject export written');
    return outcome;
  } finally {
    await spool.remove();
  }
}

/**
 * Resolves the map (a map that does not fit fails here, before anything is recorded or written),
 * records the export, and reads every location into the spool, in the map's order.
 */
async function readAll(
  req: ExportRequest,
  s: ExportServices,
  exportId: string,
  cp: ExportCheckpoint,
  spool: Spool,
): Promise<ReadLocation[]> {
  const schema = s.target.postgres.schema;
  return s.target.postgres.withClient((client) =>
    withPostgresTenantLock(client, schema, 'shared', s.locks.waitMs, async () => {
      const map = await resolveMap(
        s.map,
        { pg: client, schema, mongo: s.target.mongo },
        { tenant: req.tenant },
      );
      // The same binding erasure uses: the column types the id is a value of, and the pseudonym
      // a location's subject field holds once anonymised (such rows are still the person's, to
      // whoever holds the ledger key).
      const bound = bindSubject(map, {
        key: s.ledgerKeys.key('pseudonym'),
        tenant: req.tenant,
        subjectId: req.subjectId,
      });
      const resolved = new Map([...map.postgres, ...map.mongo].map((l) => [l.id, l]));
      const order = s.map.map((l) => resolved.get(locationId(l))).filter((l) => l !== undefined);
      await s.records.begin({
        exportId,
        tenant: req.tenant,
        requestedBy: req.requestedBy,
        subjectHash: s.ledgerKeys.subjectHash(req.tenant, req.subjectId),
        destination: req.destination,
        objectKey: bundleKey(req.tenant, exportId),
        keyId: cp.key.keyId,
        createdAt: new Date(cp.createdAt),
        expiresAt: new Date(cp.expiresAt),
      });
      return inTransaction(client, async () => {
        // One snapshot for every table: a row reached through another is the one that was there.
        await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const out: ReadLocation[] = [];
        let records = 0;
        for (const loc of order) {
          s.throwIfInterrupted();
          const counted = { records: 0 };
          const batches =
            loc.store === 'postgres'
              ? postgresRows(client, schema, loc, map.postgres, bound, req.subjectId)
              : mongoDocuments(s.target.mongo, loc, map.mongo, req.subjectId, bound);
          const file = await spool.write(jsonArray(batches, counted));
          out.push({ loc, file, records: counted.records });
          records += counted.records;
          await s.progress({ phase: 'read', locations: out.length, locationsTotal: order.length, records });
        }
        return out;
      });
    }),
  );
}
