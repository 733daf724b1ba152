/**
 * Where a backup's objects live and what they are called, and which of a tenant's tables and
 * collections a backup holds. Everything of one backup is under `backups/<tenant>/<backup id>/`:
 *
 *   postgres/schema.json                the schema's structure (postgres-schema.ts), sealed like the data
 *   postgres/tables/<table>.copy        each table's rows as COPY text
 *   mongo/collections.json              each collection's options and indexes (canonical Extended JSON)
 *   mongo/collections/<collection>.bson each collection's documents as concatenated BSON
 *   manifest.json                       written last: the commit marker (manifest.ts)
 *
 * Object names inside the backup (what the sealing key is bound to) are these paths without the
 * extension, e.g. `postgres/tables/users`: no table or collection name can collide with another
 * object's.
 */
import { createHash } from 'node:crypto';
import { isReservedName } from '../../queues/fields.ts';

export function backupPrefix(tenant: string, backupId: string): string {
  return `backups/${tenant}/${backupId}/`;
}

export function manifestKey(tenant: string, backupId: string): string {
  return `${backupPrefix(tenant, backupId)}manifest.json`;
}

export const POSTGRES_SCHEMA_OBJECT = { name: 'postgres/schema', file: 'postgres/schema.json' };
export const MONGO_SHAPES_OBJECT = { name: 'mongo/collections', file: 'mongo/collections.json' };

/**
 * A table or collection name as one path segment: every byte outside [A-Za-z0-9_-] percent-encoded
 * (its UTF-8), so `a/b`, `..` or `x.y` can neither leave the backup's folder nor meet another name.
 */
export function encodeName(name: string): string {
  return Array.from(Buffer.from(name, 'utf8'), (byte) => {
    const c = String.fromCharCode(byte);
    return /[A-Za-z0-9_-]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

export function tableObject(table: string): { name: string; file: string } {
  const segment = encodeName(table);
  return { name: `postgres/tables/${segment}`, file: `postgres/tables/${segment}.copy` };
}

/** The table or collection an object of kind table or collection holds, from its name. */
export function memberOf(objectName: string): string {
  return decodeURIComponent(objectName.slice(objectName.lastIndexOf('/') + 1));
}

export function collectionObject(collection: string): { name: string; file: string } {
  const segment = encodeName(collection);
  return { name: `mongo/collections/${segment}`, file: `mongo/collections/${segment}.bson` };
}

/**
 * The fleet's own records a backup keeps: migration history (so the restored tenant migrates on
 * from where it was) and backfill progress. Locks, load checkpoints and the like belong to runs of
 * the live tenant, and stay out.
 */
const KEPT_RESERVED = new Set(['_dbfleet_migrations', '_dbfleet_backfills']);

/** Whether a table or collection of the tenant goes into its backups. */
export function isBackedUp(name: string): boolean {
  return !isReservedName(name) || KEPT_RESERVED.has(name);
}

/** A backup id: sortable by time, unique by its run. */
export function newBackupId(startedAt: Date, runId: string): string {
  const stamp = startedAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `${stamp}-${runTag(runId)}`;
}

/** 12 hex digits naming a run in the names of things it creates (staging schemas, collections). */
export function runTag(runId: string): string {
  return createHash('sha256').update(runId).digest('hex').slice(0, 12);
}

/** The schema a restore builds beside the live one, and the collection-name prefix of its staging. */
export function restoreStagingName(runId: string): string {
  return `_dbfleet_r_${runTag(runId)}`;
}

/** What a restore renames the data it replaced to: a schema, and a prefix for collections. */
export function replacedName(runId: string): string {
  return `_dbfleet_x_${runTag(runId)}`;
}
