/**
 * The sweep that keeps "nothing readable after expiry": every export of this deployment past its
 * expires_at loses its objects (key.json first, which makes the bundle unreadable at once, then the
 * bundle and anything else under its folder) and is marked deleted. A presigned link stops working
 * at expiry by itself; a local path, and the object behind any link, only once this has run. It
 * runs at the start of every export-subject job and from `dbfleet exports expire` (schedule that for
 * deployments that export rarely).
 */
import type { Logger } from '../logger.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type pg from 'pg';
import { bundleKey, exportPrefix, keyFileKey } from './export-bundle.ts';
import { ExportRecords, type ExportRow } from './export-records.ts';

export interface ExpireDeps {
  control: { pool: pg.Pool };
  prefix: string;
  objects: ObjectStore;
  localObjects: ObjectStore;
  log: Logger;
}

export interface ExpireOutcome {
  /** Export ids whose objects were deleted. */
  deleted: string[];
  /** Export ids whose objects could not be deleted this time (the next sweep tries again). */
  failed: string[];
}

export async function deleteExport(store: ObjectStore, row: ExportRow): Promise<void> {
  await store.delete(keyFileKey(row.tenant, row.export_id));
  await store.delete(bundleKey(row.tenant, row.export_id));
  for await (const o of store.list(exportPrefix(row.tenant, row.export_id))) await store.delete(o.key);
}

export async function expireExports(
  deps: ExpireDeps,
  o: { now?: Date; tenant?: string } = {},
): Promise<ExpireOutcome> {
  const records = new ExportRecords(deps.control.pool, deps.prefix);
  const out: ExpireOutcome = { deleted: [], failed: [] };
  for (const row of await records.expired(o.now ?? new Date(), o.tenant)) {
    try {
      await deleteExport(row.destination === 'local' ? deps.localObjects : deps.objects, row);
      await records.markDeleted(row.export_id);
      out.deleted.push(row.export_id);
    } catch (err) {
      // One store out of reach must not keep the others' expired exports alive.
      out.failed.push(row.export_id);
      deps.log.warn(
        { err, exportId: row.export_id, tenant: row.tenant },
        'could not delete an expired subject export; the next sweep tries again',
      );
    }
  }
  if (out.deleted.length || out.failed.length)
    deps.log.info(
      { deleted: out.deleted.length, failed: out.failed.length },
      'expired subject exports swept',
    );
  return out;
}
