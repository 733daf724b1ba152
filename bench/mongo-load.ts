/**
 * Bench (f): load-fixtures documents/s into MongoDB (FerretDB here) against the driver's own
 * unordered insertMany of the same documents, in batches of the same size, into a collection with
 * the same indexes.
 *
 * The reference is the insert alone: its documents are read from the same file and validated by the
 * same fixture schema outside its clock, which runs only around each insertMany. The fleet's clock
 * runs from enqueue to result, so reading, parsing and validating count against it (it overlaps
 * them with the previous batch's insert, on the same two cores the server uses).
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Db, Document } from 'mongodb';
import type { FleetDeps } from '../src/runtime/deps.ts';
import config from '../dbfleet.config.ts';
import { psql, settle } from './common.ts';
import { timedJob } from './worker.ts';

/** load-fixtures' default batch for MongoDB, used by both sides. */
const BATCH = 10_000;

/**
 * FerretDB's PostgreSQL checkpointed and flushed to disk before each timed side, so that one side's
 * dirty pages are not written out during the other's timing (as bench (b) does for its cluster).
 */
export const settleMongo = () => settle(process.env.DBFLEET_FERRET_POSTGRES_URL);

/** Untimed, after a side: statistics and visibility now rather than by autovacuum during the next. */
export function vacuumMongo() {
  const url = process.env.DBFLEET_FERRET_POSTGRES_URL;
  if (url) psql(url, 'VACUUM (ANALYZE)');
}

/** The same documents the load produces: each line parsed and validated by the fixture schema. */
export async function* batches(file: string): AsyncGenerator<Document[]> {
  const schema = config.fixtures!.listening_events!;
  let batch: Document[] = [];
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    if (!line) continue;
    batch.push(schema.parse(JSON.parse(line)) as Document);
    if (batch.length === BATCH) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

/** The reference: seconds spent in insertMany({ ordered: false }), one batch at a time. */
async function driverInsertMany(db: Db, file: string): Promise<number> {
  const name = 'listening_events_ref';
  await db.createCollection(name);
  await db.collection(name).createIndex({ userId: 1, playedAt: 1 }); // as the demo's migration 1
  let seconds = 0;
  for await (const docs of batches(file)) {
    const started = performance.now();
    await db.collection(name).insertMany(docs, { ordered: false });
    seconds += (performance.now() - started) / 1000;
  }
  return seconds;
}

export async function mongoLoadVersusInsertMany(
  deps: FleetDeps,
  tenant: string,
  file: string,
  fileRoots: string,
  rows: number,
) {
  const db = deps.mongo.db(deps.env.DBFLEET_TENANT_MONGO_URL, `t_${tenant}`);
  settleMongo();
  const insertManySeconds = await driverInsertMany(db, file);
  vacuumMongo();

  const load = await timedJob(
    deps,
    'load-fixtures',
    {
      tenant,
      target: { store: 'mongo', name: 'listening_events' },
      schema: 'listening_events',
      source: { type: 'file', path: file },
      batchSize: BATCH,
    },
    { env: { DBFLEET_FILE_ROOTS: fileRoots }, settle: settleMongo },
  );
  const { result, seconds: loadSeconds } = load;
  const stored = await db.collection('listening_events').countDocuments();
  if (result.loaded !== rows || stored !== rows)
    throw new Error(`fleet loaded ${result.loaded}, collection holds ${stored}, expected ${rows}`);
  return {
    documents: rows,
    batch: BATCH,
    insertManyDocsPerSecond: Math.round(rows / insertManySeconds),
    loadFixturesDocsPerSecond: Math.round(rows / loadSeconds),
    ratio: +(insertManySeconds / loadSeconds).toFixed(3),
    workerPeakRssMiB: load.workerPeakRssMiB,
    // Includes its start-up (module loading, about a second): compare runs, not absolute numbers.
    workerCpuMicrosPerDoc: +((load.workerCpuSeconds * 1e6) / rows).toFixed(2),
  };
}
