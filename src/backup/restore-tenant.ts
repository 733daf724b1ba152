/**
 * Restoring a backup into a tenant, the backup's own or another. Nothing of the target changes
 * until the backup has been verified whole (verify.ts, deep), and then only beside the live data: a
 * staging schema and staging collections are built under the tenant's migration locks, each table
 * committed with a progress row and each collection checkpointed, so a crashed restore resumes. Only
 * when everything is in, the swap: PostgreSQL in one transaction (the live schema renamed aside, the
 * staging schema renamed into its place), then MongoDB collection by collection, after a marker in
 * the target database says the swap has begun: from then on a retry only rolls the swap forward.
 * What was replaced is renamed, not dropped (restore-records.ts).
 */
import { createHash } from 'node:crypto';
import type { Collection, Db } from 'mongodb';
import type { Result } from '../../queues/index.ts';
import type pg from 'pg';
import { classifyError, PermanentError, TransientError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import {
  withMongoTenantLock,
  withPostgresTenantLock,
  type LockSettings,
} from '../migrations/tenant-locks.ts';
import type { Checkpoint } from '../runtime/checkpoint.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import { quoteCatalogName, quoteIdent } from '../stores/identifiers.ts';
import { collectionExists } from '../stores/mongo.ts';
import { inTransaction, withPoolClient } from '../stores/postgres.ts';
import type { BackupCatalog } from './catalog.ts';
import { BackupFault } from './fault.ts';
import type { KeyProvider } from './keys.ts';
import { runLanes } from './lanes.ts';
import { isBackedUp, memberOf, replacedName, restoreStagingName, runTag } from './layout.ts';
import type { ManifestObject } from './manifest.ts';
import { loadCollection, shapesFromText } from './mongo-data.ts';
import { copyTableIn } from './postgres-data.ts';
import {
  applyForeignKeysAndSequences,
  applyInSchema,
  keysAndIndexes,
  createPostgresTables,
  type PostgresSchemaScript,
} from './postgres-schema.ts';
import type { Reapplied, StagedTarget } from '../erase/reapply.ts';
import type { RestoreRecords } from './restore-records.ts';
import {
  BackupVerifyError,
  openBackup,
  openObject,
  readTextObject,
  verifyDeep,
  type OpenedBackup,
} from './verify.ts';

export interface RestoreRequest {
  backupId: string;
  /** The tenant the backup is of. */
  source: string;
  target: string;
  runId: string;
  /** Replace a target other than the source that already holds data. */
  replace: boolean;
  /** Accept a backup made without a key. */
  allowUnencrypted: boolean;
  verifyOnly: boolean;
}

export interface RestoreProgress {
  phase: 'verify' | 'postgres' | 'mongo' | 'swap';
  objects: number;
  objectsTotal: number;
  /** Rows or documents loaded so far (0 while verifying). */
  records: number;
  /** Stored bytes read so far in this phase. */
  bytes: number;
}

/** Where erased people are erased again, before the restored data is opened. */
export type StagedData = StagedTarget;

export interface RestoreServices {
  store: ObjectStore;
  keys: KeyProvider | undefined;
  /** The target tenant's server pool, schema and database. */
  target: { pool: pg.Pool; schema: string; mongo: Db };
  records: RestoreRecords;
  catalog: BackupCatalog;
  checkpoint: Checkpoint;
  progress(p: RestoreProgress): Promise<void>;
  signal: AbortSignal;
  log: Logger;
  locks: LockSettings;
  parallel: number;
  /**
   * Applies the erasures recorded for the source tenant since the backup began to the restored
   * data, but those in `exclude`.
   */
  reapplyErasures(
    staged: StagedData,
    backup: { since: Date; exclude: readonly string[] },
  ): Promise<Reapplied>;
  /** Registers the target tenant, once its data is in (nothing when it is registered). */
  register(): Promise<void>;
}

/** What a restore reports: the restore contract's result. */
export type RestoreOutcome = Result<'restore'>;

interface RestoreCheckpoint {
  verified: boolean;
  /** Collections staged. (Tables are recorded in the staging schema, with their rows.) */
  collections: string[];
  outcome?: RestoreOutcome;
}

const PROGRESS = '_dbfleet_restore_progress';
const SWAP_MARKERS = '_dbfleet_restores';

const tableOf = (o: ManifestObject) => memberOf(o.name);
const collectionOf = (o: ManifestObject) => memberOf(o.name);

export async function restoreTenant(req: RestoreRequest, s: RestoreServices): Promise<RestoreOutcome> {
  const cp: RestoreCheckpoint = (await s.checkpoint.get<RestoreCheckpoint>()) ?? {
    verified: false,
    collections: [],
  };
  if (cp.outcome) return cp.outcome;
  let b: OpenedBackup;
  try {
    b = await openBackup(s.store, req.source, req.backupId, s.keys, { allowUnsealed: req.allowUnencrypted });
    if (!cp.verified) {
      let checked = 0;
      let read = 0;
      const total = b.manifest.objects.length;
      await verifyDeep(b, (o) =>
        s.progress({
          phase: 'verify',
          objects: ++checked,
          objectsTotal: total,
          records: 0,
          bytes: (read += o.storedBytes),
        }),
      );
    }
  } catch (err) {
    // What a verify found is remembered in the catalog; a fault of the moment (S3 down) is not one.
    if (err instanceof BackupFault) await s.catalog.recordVerify(req.source, req.backupId, err.fault);
    throw err;
  }
  if (!cp.verified) {
    await s.catalog.recordVerify(req.source, req.backupId, 'ok');
    cp.verified = true;
    await s.checkpoint.set(cp);
  }
  const { objects } = b.manifest;
  const total = objects.length;
  const counts = {
    restoredTables: objects.filter((o) => o.kind === 'table').length,
    restoredCollections: objects.filter((o) => o.kind === 'collection').length,
    records: objects.reduce((n, o) => n + o.records, 0),
  };
  if (req.verifyOnly) {
    const outcome: RestoreOutcome = {
      backupId: req.backupId,
      targetTenant: req.target,
      verified: true,
      restoredTables: 0,
      restoredCollections: 0,
      records: 0,
      erasuresReapplied: 0,
      replaced: null,
    };
    await s.checkpoint.finish({ ...cp, outcome });
    return outcome;
  }

  await s.records.start({ runId: req.runId, backupId: req.backupId, source: req.source, target: req.target });
  const staging = restoreStagingName(req.runId);
  const replaced = replacedName(req.runId);
  const stores = {
    postgres: objects.some((o) => o.kind === 'postgres-schema'),
    mongo: objects.some((o) => o.kind === 'mongo-shapes'),
  };
  const markers = s.target.mongo.collection<SwapMarker>(SWAP_MARKERS);
  const tag = runTag(req.runId);

  const outcome = await withMongoTenantLock(s.target.mongo, s.locks, () =>
    withPoolClient(s.target.pool, (leader) =>
      withPostgresTenantLock(leader, s.target.schema, 'exclusive', s.locks.waitMs, async () => {
        const marker = await markers.findOne({ _id: tag });
        const swapping = marker?.phase === 'swapping';
        let erasures = marker?.erasures ?? 0;
        const since = new Date(b.manifest.startedAt);
        let applied = marker?.erasureIds ?? [];
        if (!swapping) {
          if (req.source !== req.target && !req.replace)
            await refuseNonEmptyTarget(leader, s, req.target, stores);
          await stagePostgres(b, s, leader, staging);
          await stageMongo(b, s, cp, staging);
          const staged = await s.reapplyErasures(
            {
              schema: staging,
              collection: (name) => collectionAlias(staging, name),
              pool: s.target.pool,
              mongo: s.target.mongo,
            },
            { since, exclude: [] },
          );
          erasures = staged.subjects;
          applied = staged.erasureIds;
          // Where the target's data will go, recorded before anything moves.
          await s.records.replacing(req.runId, {
            schema: stores.postgres && (await schemaExists(leader, s.target.schema)) ? replaced : null,
            collections: stores.mongo ? `${replaced}_` : null,
          });
          await markers.updateOne(
            { _id: tag },
            { $set: { phase: 'swapping', erasures, erasureIds: applied } },
            { upsert: true },
          );
        }
        await s.progress({
          phase: 'swap',
          objects: total,
          objectsTotal: total,
          records: counts.records,
          bytes: 0,
        });
        let replacedSchema: string | null;
        let replacedCollections: string | null;
        try {
          replacedSchema = await swapPostgres(leader, s.target.schema, staging, replaced);
          // A backup of one store restores that store only: the other is left as it is.
          replacedCollections = stores.mongo
            ? await swapMongo(s.target.mongo, markers, tag, b, staging, replaced)
            : null;
        } catch (err) {
          // Once the swap has begun the only way is forward: retrying the job finishes it.
          throw new TransientError(
            'swap_incomplete',
            `the restore stopped while swapping the restored data in (${classifyError(err).message}); ` +
              'retry the job to finish the swap',
          );
        }
        // An erasure recorded after the staged data was erased (while a crashed attempt's locks
        // were free) is applied to the swapped-in data now, still under the locks.
        const late = await s.reapplyErasures(
          { schema: s.target.schema, collection: (name) => name, pool: s.target.pool, mongo: s.target.mongo },
          { since, exclude: applied },
        );
        if (late.subjects > 0) {
          erasures += late.subjects;
          await markers.updateOne(
            { _id: tag },
            { $set: { erasures }, $push: { erasureIds: { $each: late.erasureIds } } },
          );
        }
        await s.records.replacing(req.runId, { schema: replacedSchema, collections: replacedCollections });
        // Kept: it says which set-aside collection was which, until they are dropped.
        await markers.updateOne({ _id: tag }, { $set: { phase: 'complete' } });
        return {
          backupId: req.backupId,
          targetTenant: req.target,
          verified: true as const,
          ...counts,
          erasuresReapplied: erasures,
          replaced: { schema: replacedSchema, collections: replacedCollections },
        };
      }),
    ),
  );
  await s.register();
  await s.records.complete(req.runId, outcome.erasuresReapplied);
  await s.checkpoint.finish({ ...cp, outcome });
  s.log.info({ backupId: req.backupId, target: req.target }, 'restore complete');
  return outcome;
}

/** Another tenant than the backup's is restored into only when it holds nothing, or on purpose. */
async function refuseNonEmptyTarget(
  client: pg.PoolClient,
  s: RestoreServices,
  target: string,
  stores: { postgres: boolean; mongo: boolean },
): Promise<void> {
  const held: string[] = [];
  const { rows } = await client.query<{ name: string; rows: boolean }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
    [s.target.schema],
  );
  for (const r of stores.postgres ? rows : []) {
    if (!isBackedUp(r.name)) continue;
    if (r.name === '_dbfleet_migrations') {
      const n = await client.query(
        `SELECT 1 FROM ${quoteIdent(s.target.schema)}."_dbfleet_migrations" LIMIT 1`,
      );
      if (n.rowCount === 0) continue;
    }
    held.push(`table ${r.name}`);
  }
  const collections = stores.mongo
    ? await s.target.mongo.listCollections({}, { nameOnly: true }).toArray()
    : [];
  for (const c of collections) {
    if (!isBackedUp(c.name)) continue;
    if (
      c.name === '_dbfleet_migrations' &&
      (await s.target.mongo.collection(c.name).countDocuments({}, { limit: 1 })) === 0
    )
      continue;
    held.push(`collection ${c.name}`);
  }
  if (held.length)
    throw new PermanentError(
      'target_not_empty',
      `tenant ${target} already holds data (${held.slice(0, 5).join(', ')}${held.length > 5 ? ', ...' : ''}): ` +
        'restore into a new tenant, or replace it on purpose (replace: true, --replace)',
    );
}

async function stagePostgres(
  b: OpenedBackup,
  s: RestoreServices,
  leader: pg.PoolClient,
  staging: string,
): Promise<void> {
  const schemaObject = b.manifest.objects.find((o) => o.kind === 'postgres-schema');
  if (!schemaObject) return;
  const script = JSON.parse(await readTextObject(b, schemaObject)) as PostgresSchemaScript;
  const q = quoteIdent(staging);
  await leader.query(`CREATE SCHEMA IF NOT EXISTS ${q}`);
  await leader.query(`CREATE TABLE IF NOT EXISTS ${q}.${PROGRESS} (step text PRIMARY KEY)`);
  const mark = (c: pg.PoolClient, step: string) =>
    c.query(`INSERT INTO ${q}.${PROGRESS} VALUES ($1)`, [step]);
  const done = new Set(
    (await leader.query<{ step: string }>(`SELECT step FROM ${q}.${PROGRESS}`)).rows.map((r) => r.step),
  );
  if (!done.has('tables'))
    await inTransaction(leader, async () => {
      await createPostgresTables(leader, staging, script);
      await mark(leader, 'tables');
    });
  const tables = b.manifest.objects
    .filter((o) => o.kind === 'table' && !done.has(`table:${tableOf(o)}`))
    .sort((x, y) => y.storedBytes - x.storedBytes);
  let staged = 0;
  let records = 0;
  let bytes = 0;
  const objectsTotal = b.manifest.objects.length;
  await runLanes(tables, s.parallel, s.signal, (_lane, drain) =>
    withPoolClient(s.target.pool, (c) =>
      drain(async (o) => {
        const table = tableOf(o);
        await inTransaction(c, async () => {
          // A table an earlier attempt began and did not commit is empty again; truncate for safety.
          await c.query(`TRUNCATE ${q}.${quoteCatalogName(table)}`);
          const rows = await copyTableIn(c, staging, table, await openObject(b, o));
          if (rows !== o.records)
            throw new BackupVerifyError(
              'record_count',
              `backup ${b.manifest.backupId}: table ${table} loaded ${rows} rows, the manifest says ${o.records}`,
            );
          await mark(c, `table:${table}`);
        });
        records += o.records;
        bytes += o.storedBytes;
        await s.progress({ phase: 'postgres', objects: ++staged, objectsTotal, records, bytes });
      }),
    ),
  );
  // Keys, checks and indexes side by side (as pg_restore -j does), each committed with its step.
  const post = keysAndIndexes(script)
    .map((statement, i) => ({ statement, step: `post:${i}` }))
    .filter((x) => !done.has(x.step));
  await runLanes(post, s.parallel, s.signal, (_lane, drain) =>
    withPoolClient(s.target.pool, (c) =>
      drain((x) =>
        inTransaction(c, async () => {
          await applyInSchema(c, staging, x.statement);
          await mark(c, x.step);
        }),
      ),
    ),
  );
  if (!done.has('foreign-keys'))
    await inTransaction(leader, async () => {
      await applyForeignKeysAndSequences(leader, staging, script);
      await mark(leader, 'foreign-keys');
    });
}

async function stageMongo(
  b: OpenedBackup,
  s: RestoreServices,
  cp: RestoreCheckpoint,
  staging: string,
): Promise<void> {
  const shapesObject = b.manifest.objects.find((o) => o.kind === 'mongo-shapes');
  if (!shapesObject) return;
  const shapes = new Map(
    shapesFromText(await readTextObject(b, shapesObject)).map((shape) => [shape.name, shape]),
  );
  const db = s.target.mongo;
  const todo = b.manifest.objects.filter(
    (o) => o.kind === 'collection' && !cp.collections.includes(collectionOf(o)),
  );
  let staged = 0;
  let records = 0;
  let bytes = 0;
  const objectsTotal = b.manifest.objects.length;
  await runLanes(todo, s.parallel, s.signal, (_lane, drain) =>
    drain(async (o) => {
      const name = collectionOf(o);
      const shape = shapes.get(name);
      if (!shape)
        throw new BackupVerifyError(
          'record_count',
          `backup ${b.manifest.backupId}: collection ${name} has no shape`,
        );
      const stagedName = collectionAlias(staging, name);
      // Left half-loaded by an earlier attempt: load it again from the start.
      if (await collectionExists(db, stagedName)) await db.collection(stagedName).drop();
      const n = await loadCollection(db, { ...shape, name: stagedName }, await openObject(b, o));
      if (n !== o.records)
        throw new BackupVerifyError(
          'record_count',
          `backup ${b.manifest.backupId}: collection ${name} loaded ${n} documents, the manifest says ${o.records}`,
        );
      cp.collections.push(name);
      await s.checkpoint.set(cp);
      records += o.records;
      bytes += o.storedBytes;
      await s.progress({ phase: 'mongo', objects: ++staged, objectsTotal, records, bytes });
    }),
  );
}

async function schemaExists(client: pg.PoolClient, name: string): Promise<boolean> {
  const { rowCount } = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [name]);
  return rowCount === 1;
}

/**
 * Renames the live schema aside and the staging schema into its place, in one transaction; does
 * nothing when an earlier attempt did it. Returns the name the live schema went to, or null.
 */
async function swapPostgres(
  client: pg.PoolClient,
  live: string,
  staging: string,
  replaced: string,
): Promise<string | null> {
  await inTransaction(client, async () => {
    if (!(await schemaExists(client, staging))) return;
    await client.query(`DROP TABLE ${quoteIdent(staging)}.${PROGRESS}`);
    if (await schemaExists(client, live))
      await client.query(`ALTER SCHEMA ${quoteIdent(live)} RENAME TO ${quoteIdent(replaced)}`);
    await client.query(`ALTER SCHEMA ${quoteIdent(staging)} RENAME TO ${quoteIdent(live)}`);
  });
  return (await schemaExists(client, replaced)) ? replaced : null;
}

/**
 * A staged or set-aside collection's name: the run's prefix and a hash of the collection's name, so
 * that it stays short (the namespace limit) whatever the name; the swap marker maps them back.
 */
export function collectionAlias(prefix: string, name: string): string {
  return `${prefix}_${createHash('sha256').update(name).digest('hex').slice(0, 16)}`;
}

interface SwapMarker {
  _id: string;
  phase: 'swapping' | 'complete';
  /** Erasures applied to the staged data, for the result of a retry that only swaps. */
  erasures?: number;
  /** Their ledger ids: a retry applies only those recorded since. */
  erasureIds?: string[];
  /** Which collection each set-aside one was. */
  aside?: { name: string; as: string }[];
}

/**
 * Moves the live collections aside (those a backup would hold) and the staged ones into their place,
 * one rename each, naming each set-aside one in the marker before it moves; a retry picks up where a
 * crash stopped. Returns the prefix the live ones went under, or null when there were none.
 */
async function swapMongo(
  db: Db,
  markers: Collection<SwapMarker>,
  tag: string,
  b: OpenedBackup,
  staging: string,
  replaced: string,
): Promise<string | null> {
  const restored = new Set(b.manifest.objects.filter((o) => o.kind === 'collection').map(collectionOf));
  const names = async () =>
    new Set((await db.listCollections({}, { nameOnly: true }).toArray()).map((c) => c.name));
  let present = await names();
  const setAside = async (name: string) => {
    // Taken only if the app created the collection again after it was set aside: a name of its own.
    let as = collectionAlias(replaced, name);
    for (let n = 2; present.has(as); n++) as = `${collectionAlias(replaced, name)}_${n}`;
    await markers.updateOne({ _id: tag }, { $addToSet: { aside: { name, as } } });
    await db.collection(name).rename(as);
    present.add(as);
  };
  for (const name of present) if (isBackedUp(name) && !restored.has(name)) await setAside(name);
  present = await names();
  for (const name of restored) {
    const stagedName = collectionAlias(staging, name);
    if (!present.has(stagedName)) continue; // swapped in by an earlier attempt
    if (present.has(name)) await setAside(name);
    await db.collection(stagedName).rename(name);
  }
  present = await names();
  return [...present].some((n) => n.startsWith(`${replaced}_`)) ? `${replaced}_` : null;
}

/** Drops what a failed restore staged; the target was not touched. Not once the swap has begun. */
export async function dropStaging(target: { pool: pg.Pool; mongo: Db }, runId: string): Promise<boolean> {
  const tag = runTag(runId);
  const marker = await target.mongo.collection<SwapMarker>(SWAP_MARKERS).findOne({ _id: tag });
  if (marker?.phase === 'swapping') return false;
  const staging = restoreStagingName(runId);
  await withPoolClient(target.pool, (c) => c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(staging)} CASCADE`));
  for (const c of await target.mongo.listCollections({}, { nameOnly: true }).toArray())
    if (c.name.startsWith(`${staging}_`)) await target.mongo.collection(c.name).drop();
  return true;
}

/** Drops the data a restore replaced (its schema and collections renamed aside). */
export async function dropReplaced(
  target: { pool: pg.Pool; mongo: Db },
  replaced: { schema: string | null; collections: string | null },
): Promise<void> {
  if (replaced.schema)
    await withPoolClient(target.pool, (c) =>
      c.query(`DROP SCHEMA IF EXISTS ${quoteIdent(replaced.schema!)} CASCADE`),
    );
  if (replaced.collections) {
    for (const c of await target.mongo.listCollections({}, { nameOnly: true }).toArray())
      if (c.name.startsWith(replaced.collections)) await target.mongo.collection(c.name).drop();
    const tag = replaced.collections.slice('_dbfleet_x_'.length, -1);
    await target.mongo.collection<SwapMarker>(SWAP_MARKERS).deleteOne({ _id: tag });
  }
}
