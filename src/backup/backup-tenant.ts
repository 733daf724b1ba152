/**
 * One backup of one tenant: every collection of its MongoDB database, then every table of its
 * PostgreSQL schema in one snapshot, each streamed as a compressed, sealed object (object-codec.ts),
 * then the manifest, written last: only it makes the backup restorable. The tenant's migration locks
 * are held throughout, so no migration changes what is being read.
 *
 * A retried attempt keeps the run's backup id and data key (from the checkpoint) and the collections
 * already stored; the PostgreSQL tables are read again in a new snapshot, since tables read in the
 * old one and in a new one would not be consistent with each other.
 */
import { Readable } from 'node:stream';
import type { Db } from 'mongodb';
import type pg from 'pg';
import type { Store } from '../../queues/fields.ts';
import type { Result } from '../../queues/index.ts';
import { PermanentError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import {
  withMongoTenantLock,
  withPostgresTenantLock,
  type LockSettings,
} from '../migrations/tenant-locks.ts';
import { compareVersions } from '../migrations/types.ts';
import type { Checkpoint } from '../runtime/checkpoint.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { quoteIdent } from '../stores/identifiers.ts';
import type { TenantPostgres } from '../stores/postgres.ts';
import type { BackupCatalog } from './catalog.ts';
import { newDataKey, type KeyProvider, type WrappedKey } from './keys.ts';
import {
  backupPrefix,
  collectionObject,
  isBackedUp,
  manifestKey,
  MONGO_SHAPES_OBJECT,
  newBackupId,
  POSTGRES_SCHEMA_OBJECT,
  tableObject,
} from './layout.ts';
import {
  MANIFEST_FORMAT,
  readManifest,
  writeManifest,
  type ManifestBody,
  type ManifestObject,
} from './manifest.ts';
import { documentsOut, readMongoShapes, shapesToText } from './mongo-data.ts';
import { writeObject, type Compression } from './object-codec.ts';
import { copyTableOut } from './postgres-data.ts';
import { readPostgresSchema } from './postgres-schema.ts';
import { exportSnapshot } from './postgres-snapshot.ts';
import { partSizeFor, runLanes } from './lanes.ts';

/** How often a running backup touches its catalog row, whatever it is doing. */
export const HEARTBEAT_MS = 60_000;

export interface BackupRequest {
  tenant: string;
  runId: string;
  stores: readonly Store[];
  compression: Compression;
  /** false: a backup without a key, on purpose. true fails when no master key is configured. */
  encrypt: boolean;
}

export interface BackupProgress {
  phase: 'mongo' | 'postgres' | 'manifest';
  objects: number;
  records: number;
  storedBytes: number;
}

export interface BackupServices {
  postgres: TenantPostgres;
  mongo: Db;
  objects: ObjectStore;
  destination: 's3' | 'local';
  keys: KeyProvider | undefined;
  catalog: BackupCatalog;
  checkpoint: Checkpoint;
  progress(p: BackupProgress): Promise<void>;
  signal: AbortSignal;
  log: Logger;
  locks: LockSettings;
  /** Multipart part size; grown per object for objects too big for 10,000 parts. */
  partSizeBytes: number;
  /** Tables or collections read at once. */
  parallel: number;
}

/** What a backup reports: the backup contract's result. */
export type BackupOutcome = Result<'backup'>;

interface BackupCheckpoint {
  backupId: string;
  startedAt: string;
  key: WrappedKey | null;
  /** Collections stored by an earlier attempt of the run. */
  collections: ManifestObject[];
  outcome?: BackupOutcome;
}

function outcomeOf(m: ManifestBody, mKey: string, manifestBytes: number): BackupOutcome {
  return {
    backupId: m.backupId,
    manifestKey: mKey,
    keyId: m.key?.keyId ?? null,
    objects: m.objects.length,
    tables: m.objects.filter((o) => o.kind === 'table').length,
    collections: m.objects.filter((o) => o.kind === 'collection').length,
    records: m.objects.reduce((n, o) => n + o.records, 0),
    bytes: m.objects.reduce((n, o) => n + o.storedBytes, 0) + manifestBytes,
  };
}

export async function backupTenant(req: BackupRequest, s: BackupServices): Promise<BackupOutcome> {
  let cp = await s.checkpoint.get<BackupCheckpoint>();
  if (cp?.outcome) return cp.outcome;
  // Fail closed: never a plaintext backup because a key was missing (WAL-G's CVE-2021-38599).
  if (req.encrypt && !s.keys)
    throw new PermanentError(
      'no_backup_key',
      'backups are encrypted and no master key is configured (DBFLEET_BACKUP_KEYS); ' +
        'to back up without a key, say so: encrypt: false',
    );
  let dataKey: Buffer | undefined;
  if (!cp) {
    const startedAt = new Date();
    dataKey = req.encrypt ? newDataKey() : undefined;
    cp = {
      backupId: newBackupId(startedAt, req.runId),
      startedAt: startedAt.toISOString(),
      key: dataKey ? await s.keys!.wrap(dataKey) : null,
      collections: [],
    };
    await s.checkpoint.set(cp);
  } else if (cp.key) {
    if (!s.keys)
      throw new PermanentError('no_backup_key', 'this backup is encrypted and no master key is configured');
    dataKey = await s.keys.unwrap(cp.key);
  }
  const { backupId } = cp;
  const prefix = backupPrefix(req.tenant, backupId);
  const mKey = manifestKey(req.tenant, backupId);
  await s.catalog.start({
    backupId,
    tenant: req.tenant,
    runId: req.runId,
    destination: s.destination,
    manifestKey: mKey,
    keyId: cp.key?.keyId ?? null,
  });

  // An earlier attempt wrote the manifest and died before recording it: the backup is complete.
  const written = await s.objects.head(mKey);
  if (written) {
    const text = await readText(s.objects, mKey);
    const { manifest } = await readManifest(text, { tenant: req.tenant, backupId }, s.keys, {
      allowUnsealed: !req.encrypt,
    });
    return finish(s, cp, manifest, mKey, Buffer.byteLength(text));
  }

  const objects: ManifestObject[] = [];
  const positions = { postgresLsn: null as string | null, mongoClusterTime: null as string | null };
  const migrations = { postgres: null as string | null, mongo: null as string | null };
  const totals = { objects: 0, records: 0, storedBytes: 0 };
  const stored = async (o: ManifestObject, phase: BackupProgress['phase']) => {
    objects.push(o);
    totals.objects++;
    totals.records += o.records;
    totals.storedBytes += o.storedBytes;
    await s.catalog.touch(backupId, totals);
    await s.progress({ phase, ...totals });
  };
  const put = async (
    file: { name: string; file: string },
    kind: ManifestObject['kind'],
    source: Readable,
    estimateBytes: number,
    records: () => number,
  ): Promise<ManifestObject> => {
    const info = await writeObject(source, {
      store: s.objects,
      key: prefix + file.file,
      name: file.name,
      compression: req.compression,
      dataKey,
      partSizeBytes: partSizeFor(estimateBytes, s.partSizeBytes),
    });
    // Keys in the manifest are relative to it, so a backup copied elsewhere still reads.
    return { ...info, key: file.file, kind, records: records() };
  };
  const putText = (file: { name: string; file: string }, kind: ManifestObject['kind'], text: string) =>
    put(file, kind, Readable.from([Buffer.from(text)]), 0, () => 0);

  const backupMongo = async () => {
    const db = s.mongo;
    const hello = (await db.admin().command({ hello: 1 })) as { $clusterTime?: { clusterTime?: unknown } };
    positions.mongoClusterTime = hello.$clusterTime?.clusterTime
      ? String(hello.$clusterTime.clusterTime)
      : null;
    const shapes = await readMongoShapes(db, isBackedUp);
    migrations.mongo = await mongoMigrationVersion(
      db,
      shapes.some((c) => c.name === '_dbfleet_migrations'),
    );
    await stored(await putText(MONGO_SHAPES_OBJECT, 'mongo-shapes', shapesToText(shapes)), 'mongo');
    const present = new Set(shapes.map((c) => collectionObject(c.name).name));
    const done = new Map(cp.collections.filter((o) => present.has(o.name)).map((o) => [o.name, o]));
    for (const o of done.values()) await stored(o, 'mongo');
    const todo = shapes.filter((c) => !done.has(collectionObject(c.name).name));
    await runLanes(todo, s.parallel, s.signal, (_lane, drain) =>
      drain(async (c) => {
        const size = await collectionSize(db, c.name);
        const out = documentsOut(db, c.name);
        const o = await put(collectionObject(c.name), 'collection', out.stream, size, out.documents);
        cp.collections.push(o);
        await s.checkpoint.set(cp);
        await stored(o, 'mongo');
      }),
    );
  };

  const backupPostgres = () =>
    s.postgres.withClient((leader) =>
      withPostgresTenantLock(leader, s.postgres.schema, 'shared', s.locks.waitMs, async () => {
        const snapshot = await exportSnapshot(leader);
        try {
          positions.postgresLsn = snapshot.lsn;
          const script = await readPostgresSchema(leader, s.postgres.schema, isBackedUp);
          migrations.postgres = await postgresMigrationVersion(leader, script.tables);
          await stored(
            await putText(POSTGRES_SCHEMA_OBJECT, 'postgres-schema', JSON.stringify(script)),
            'postgres',
          );
          const sizes = await tableSizes(leader, s.postgres.schema);
          // Largest first, so that the lanes finish together.
          const tables = script.tables
            .map((t) => t.name)
            .sort((a, b) => (sizes.get(b) ?? 0) - (sizes.get(a) ?? 0));
          await runLanes(tables, s.parallel, s.signal, async (lane, drain) => {
            const copy = (c: pg.PoolClient) =>
              drain(async (table) => {
                const out = copyTableOut(c, s.postgres.schema, table);
                const o = await put(tableObject(table), 'table', out.stream, sizes.get(table) ?? 0, out.rows);
                await stored(o, 'postgres');
              });
            if (lane === 0) return copy(leader);
            // The other lanes read in the leader's snapshot, over connections of their own.
            await s.postgres.withClient(async (c) => {
              await snapshot.join(c);
              try {
                await copy(c);
              } finally {
                await c.query('ROLLBACK').catch(() => undefined);
              }
            });
          });
        } finally {
          await snapshot.release();
        }
      }),
    );

  const run = async () => {
    if (req.stores.includes('mongo')) await backupMongo();
    if (req.stores.includes('postgres')) await backupPostgres();
  };
  // Between objects the catalog row is touched anyway; one big table can take longer than the
  // quiet spell after which a backup counts as abandoned, so the row is also touched meanwhile.
  const heartbeat = setInterval(
    () => void s.catalog.touch(backupId, totals).catch(() => undefined),
    HEARTBEAT_MS,
  );
  try {
    if (req.stores.includes('mongo')) await withMongoTenantLock(s.mongo, s.locks, () => run(), s.signal);
    else await run();
  } finally {
    clearInterval(heartbeat);
  }

  const manifest: ManifestBody = {
    format: MANIFEST_FORMAT,
    tenant: req.tenant,
    backupId,
    runId: req.runId,
    startedAt: cp.startedAt,
    finishedAt: new Date().toISOString(),
    migrations,
    positions,
    key: cp.key,
    objects: objects.sort((a, b) => a.name.localeCompare(b.name)),
  };
  const text = writeManifest(manifest, dataKey);
  await s.progress({ phase: 'manifest', ...totals });
  await s.objects.put(mKey, text);
  return finish(s, cp, manifest, mKey, Buffer.byteLength(text));
}

async function finish(
  s: BackupServices,
  cp: BackupCheckpoint,
  manifest: ManifestBody,
  mKey: string,
  manifestBytes: number,
): Promise<BackupOutcome> {
  const outcome = outcomeOf(manifest, mKey, manifestBytes);
  const recorded = await s.catalog.complete(manifest.backupId, {
    objects: outcome.objects,
    records: outcome.records,
    storedBytes: outcome.bytes,
  });
  if (!recorded) {
    // Deleted (taken for abandoned) or failed while this attempt ran: its objects may be gone, so
    // its manifest must not make it look restorable.
    await s.objects.delete(mKey);
    throw new PermanentError(
      'backup_withdrawn',
      `backup ${manifest.backupId} was deleted or marked failed while it ran; its manifest was removed`,
    );
  }
  await s.checkpoint.finish({ ...cp, outcome });
  s.log.info(
    { backupId: outcome.backupId, objects: outcome.objects, bytes: outcome.bytes },
    'backup complete',
  );
  return outcome;
}

export async function readText(store: ObjectStore, key: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of await store.get(key)) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString('utf8');
}

async function tableSizes(client: pg.PoolClient, schema: string): Promise<Map<string, number>> {
  const { rows } = await client.query<{ name: string; bytes: string }>(
    `SELECT relname AS name, pg_table_size(oid)::text AS bytes FROM pg_class
     WHERE relnamespace = $1::regnamespace AND relkind = 'r'`,
    [schema],
  );
  return new Map(rows.map((r) => [r.name, Number(r.bytes)]));
}

async function postgresMigrationVersion(
  client: pg.PoolClient,
  tables: { name: string }[],
): Promise<string | null> {
  if (!tables.some((t) => t.name === '_dbfleet_migrations')) return null;
  const { rows } = await client.query<{ v: string | null }>(
    `SELECT max(version)::text AS v FROM ${quoteIdent('_dbfleet_migrations')}`,
  );
  return rows[0]?.v ?? null;
}

async function mongoMigrationVersion(db: Db, exists: boolean): Promise<string | null> {
  if (!exists) return null;
  const versions = (
    await db
      .collection<{ _id: string }>('_dbfleet_migrations')
      .find({}, { projection: { _id: 1 } })
      .toArray()
  ).map((d) => String(d._id));
  return versions.sort(compareVersions).at(-1) ?? null;
}

/** The collection's size as the server counts it, for sizing upload parts; 0 when it will not say. */
async function collectionSize(db: Db, name: string): Promise<number> {
  try {
    const stats = (await db.command({ collStats: name })) as { size?: number };
    return Number(stats.size ?? 0);
  } catch {
    return 0;
  }
}
