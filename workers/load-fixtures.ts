/**
 * load-fixtures: stream records from a file, S3 or inline rows into a tenant table or collection,
 * validating each against its fixture schema. Bad rows are recorded (line and reason) and counted,
 * never silently dropped. Batches checkpoint as they commit, so a retried job resumes where it stopped.
 */
import { setImmediate } from 'node:timers/promises';
import type { z } from 'zod';
import type { Handler } from '../src/runtime/handler.ts';
import type { JobContext } from '../src/runtime/context.ts';
import { PermanentError, zodIssues } from '../src/errors.ts';
import { openRecords } from './load-fixtures/source.ts';
import { postgresSink } from './load-fixtures/postgres-sink.ts';
import { mongoSink } from './load-fixtures/mongo-sink.ts';
import {
  freshProgress,
  withRefused,
  type Progress,
  type Rejection,
  type Sink,
} from './load-fixtures/sink.ts';
import type { Payload, Result as Results } from '../queues/index.ts';
import { loadFixtures as loadFixturesContract } from '../queues/load-fixtures.ts';
import { checkpointLifetime } from '../src/runtime/checkpoint.ts';

type Result = Results<'load-fixtures'>;

const SAMPLE_REJECTIONS = 20;
const YIELD_EVERY = 100;
/** Default rows per batch by store: see the contract's batchSize. */
const BATCH_SIZE = { postgres: 50_000, mongo: 10_000 } as const;

function fixtureSchema(ctx: JobContext, name: string | undefined): z.ZodObject | undefined {
  if (!name) return undefined;
  const schema = ctx.config.fixtures?.[name];
  if (!schema)
    throw new PermanentError('unknown_schema', `fixture schema ${name} is not defined in the config module`);
  return schema;
}

/** Runs `load` with the sink for the payload's target; a PostgreSQL sink holds one client throughout. */
function withSink<T>(
  p: Payload<'load-fixtures'>,
  ctx: JobContext,
  schema: z.ZodObject | undefined,
  load: (sink: Sink) => Promise<T>,
): Promise<T> {
  if (p.target.store === 'postgres') {
    const columns = Object.keys(schema!.shape);
    const missingKey = p.key?.find((k) => !columns.includes(k));
    if (missingKey) {
      throw new PermanentError(
        'invalid_payload',
        `key ${missingKey} is not a column of fixture schema ${p.schema}`,
      );
    }
    return ctx.postgres.withClient((client) =>
      load(
        postgresSink({
          pg: ctx.postgres,
          client,
          table: p.target.name,
          columns,
          mode: p.mode,
          key: p.key,
          loadKey: ctx.job.runId,
          keepSeconds: checkpointLifetime(loadFixturesContract.policy),
        }),
      ),
    );
  }
  return load(
    mongoSink({
      db: ctx.mongo,
      collection: p.target.name,
      mode: p.mode,
      key: p.key,
      runId: ctx.job.runId,
      redelivered: ctx.job.redelivered,
      checkpoint: ctx.checkpoint,
    }),
  );
}

export const loadFixtures: Handler<'load-fixtures'> = async (p, ctx) => {
  const started = performance.now();
  const schema = fixtureSchema(ctx, p.schema);
  return withSink(p, ctx, schema, (sink) => load(p, ctx, schema, sink, started));
};

async function load(
  p: Payload<'load-fixtures'>,
  ctx: JobContext,
  schema: z.ZodObject | undefined,
  sink: Sink,
  started: number,
): Promise<Result> {
  const run = { prefix: ctx.job.prefix, jobId: ctx.job.id, runId: ctx.job.runId, tenant: ctx.tenant };
  const saved = await sink.prepare();
  // The last committed batch's store refusals, in case the attempt that wrote it died before
  // recording them (recording is idempotent).
  if (saved?.refused) await ctx.control.recordRejections(run, saved.refused);
  let progress: Progress = saved ?? freshProgress;
  const resumedFrom = progress.records;
  const readBefore = progress.loaded + progress.rejected;
  const samples: Rejection[] = [];
  if (saved?.done) {
    ctx.log.info({ records: progress.records }, 'load already finished by an earlier delivery');
  } else {
    if (resumedFrom > 0) ctx.log.info({ resumedFrom }, 'resuming from checkpoint');
    const keep = (rejections: Rejection[]) => {
      for (const r of rejections) if (samples.length < SAMPLE_REJECTIONS) samples.push(r);
    };

    // One batch is written while the next is read and validated: PostgreSQL and Node work in parallel.
    let inFlight: Promise<void> = Promise.resolve();
    // Batches handed to the sink so far; `progress` only counts them once written.
    let batchesTaken = progress.batches;
    const flush = async (rows: number, rejected: Rejection[], lastRecord: number) => {
      batchesTaken++;
      await inFlight; // writes stay in order: checkpoints only ever move forward
      ctx.throwIfInterrupted();
      await ctx.control.recordRejections(run, rejected);
      const next: Progress = {
        records: lastRecord,
        loaded: progress.loaded + rows,
        rejected: progress.rejected + rejected.length,
        batches: progress.batches + 1,
        done: false,
      };
      const written = sink.write(next); // takes the batch now; rows added from here on are the next one
      inFlight = (async () => {
        const refused = await written;
        await ctx.control.recordRejections(run, refused);
        keep(rejected);
        keep(refused);
        progress = withRefused(next, refused);
        await ctx.progress({
          records: progress.records,
          loaded: progress.loaded,
          rejected: progress.rejected,
        });
      })();
      inFlight.catch(() => undefined); // awaited below; avoid an unhandled rejection in between
    };

    const batchSize = p.batchSize ?? BATCH_SIZE[p.target.store];
    let rows = 0;
    let rejected: Rejection[] = [];
    let lastRecord = progress.records;
    let sinceYield = 0;
    const source = await openRecords(p.source, p.format, { s3: ctx.s3, scope: ctx.sources });
    for await (const chunk of source) {
      for (const record of chunk) {
        if (record.line <= resumedFrom) continue; // committed by an earlier attempt
        // Parsing is synchronous; without a turn of the event loop now and then, the connection
        // carrying the previous batch is not serviced and PostgreSQL waits on us.
        if (++sinceYield === YIELD_EVERY) {
          sinceYield = 0;
          await setImmediate();
        }
        lastRecord = record.line;
        if ('error' in record) {
          rejected.push({ line: record.line, reason: record.error });
        } else if (schema) {
          const parsed = schema.safeParse(record.value);
          if (parsed.success) {
            sink.add(record.line, parsed.data as Record<string, unknown>);
            rows++;
          } else rejected.push({ line: record.line, reason: zodIssues(parsed.error).join('; ') });
        } else if (record.value && typeof record.value === 'object' && !Array.isArray(record.value)) {
          sink.add(record.line, record.value as Record<string, unknown>);
          rows++;
        } else {
          rejected.push({ line: record.line, reason: 'not an object' });
        }
        if (rows + rejected.length >= batchSize) {
          await flush(rows, rejected, lastRecord);
          rows = 0;
          rejected = [];
        }
      }
    }
    // The last partial batch; also the only batch of an empty source, so `replace` still empties.
    if (rows + rejected.length > 0 || batchesTaken === 0) await flush(rows, rejected, lastRecord);
    await inFlight;
    await sink.finish(progress);
  }

  if (samples.length < SAMPLE_REJECTIONS && progress.rejected > samples.length) {
    samples.splice(0, samples.length, ...(await ctx.control.rejections(ctx.job.runId, SAMPLE_REJECTIONS)));
  }
  const seconds = (performance.now() - started) / 1000;
  // Every record read was either loaded or rejected; `records` is the last record's number, which
  // counts a CSV header and blank lines too.
  const read = progress.loaded + progress.rejected;
  const result = {
    read,
    loaded: progress.loaded,
    rejected: progress.rejected,
    sampleRejections: samples,
    batches: progress.batches,
    resumedFrom,
    rowsPerSecond: Math.round((read - readBefore) / Math.max(seconds, 0.001)),
  };
  ctx.log.info({ ...result, sampleRejections: undefined }, 'load finished');
  return result;
}
