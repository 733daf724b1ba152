/**
 * The operator's HTTP surface: Bull Board over every queue in the catalog, /healthz, /readyz and
 * Prometheus /metrics. Personal data and secrets in job data are hidden in the board's view; the
 * board changes jobs and queues only in the ways access.ts allows.
 */
import express, { type Express } from 'express';
import { Queue, QueueEvents } from 'bullmq';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Gauge } from 'prom-client';
import { catalog, isJobName, jobNames, type JobName } from '../../queues/index.ts';
import { redactPaths, type JobEnvelope } from '../jobs/envelope.ts';
import { createFleetMetrics, reasonCode } from '../metrics.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { sameServer } from '../redis.ts';
import { boardActionGuard, boardActionHooks, requireLoopbackHost } from './access.ts';
import { requireAuth, type BoardCredentials } from './auth.ts';
import { readiness } from './health.ts';
import { JOB_STATES } from './job-states.ts';

export const BOARD_PATH = '/board';

export interface BoardOptions {
  /** When set, every route but /healthz and /readyz requires these credentials. */
  credentials?: BoardCredentials | undefined;
}

export interface Board {
  app: Express;
  close(): Promise<void>;
}

export function createBoard(deps: FleetDeps, options: BoardOptions = {}): Board {
  const queues = new Map<JobName, Queue>(
    jobNames.map((n) => [n, new Queue(n, { connection: deps.redis, prefix: deps.prefix })]),
  );
  const metrics = createFleetMetrics({ defaults: true, audit: deps });

  new Gauge({
    name: 'dbfleet_queue_jobs',
    help: 'Jobs in each queue by state',
    labelNames: ['queue', 'state'],
    registers: [metrics.registry],
    async collect() {
      await Promise.all(
        [...queues].map(async ([name, q]) => {
          const counts = await q.getJobCounts(...JOB_STATES);
          for (const state of JOB_STATES) this.set({ queue: name, state }, counts[state] ?? 0);
        }),
      );
    },
  });

  // Durations and failures are observed from queue events, so one board sees the whole fleet.
  const events = jobNames.map((name) => {
    const qe = new QueueEvents(name, { connection: sameServer(deps.redis), prefix: deps.prefix });
    qe.on('completed', ({ jobId }) => {
      void queues
        .get(name)!
        .getJob(jobId)
        .then((job) => {
          if (job?.processedOn && job.finishedOn) {
            metrics.jobDuration.observe(
              { type: name, outcome: 'completed' },
              (job.finishedOn - job.processedOn) / 1000,
            );
          }
        });
    });
    qe.on('failed', ({ failedReason }) =>
      metrics.failures.inc({ type: name, reason: reasonCode(failedReason) }),
    );
    qe.on('error', (err) => deps.log.warn({ err, queue: name }, 'queue events error'));
    return qe;
  });

  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  createBullBoard({
    queues: [...queues].map(([name, q]) => {
      const adapter = new BullMQAdapter(q, { description: catalog[name].description });
      const sensitive = catalog[name].sensitive;
      adapter.setFormatter('data', (data: JobEnvelope) =>
        data && typeof data === 'object' ? { ...data, payload: redactPaths(data.payload, sensitive) } : data,
      );
      return adapter;
    }),
    serverAdapter,
    // Bull Board's UI options cannot hide single actions (read-only mode hides retry and pause too),
    // so refused buttons stay visible and answer with the 403's reason.
    options: { uiConfig: { boardTitle: 'dbfleet' }, handlerHooks: boardActionHooks },
  });

  const app = express();
  app.disable('x-powered-by');
  // Without credentials the board listens on loopback only (startBoard), and any web page could
  // reach it there through DNS rebinding but for this.
  if (!options.credentials) app.use(requireLoopbackHost());
  app.get('/healthz', (_req, res) => void res.json({ ok: true }));
  app.get('/readyz', async (_req, res) => {
    const report = await readiness(deps);
    res.status(report.ok ? 200 : 503).json(report);
  });
  if (options.credentials) app.use(requireAuth(options.credentials));
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  app.get('/', (_req, res) => res.redirect(BOARD_PATH));
  const jobState = async (queue: string, jobId: string) =>
    isJobName(queue) ? await queues.get(queue)!.getJobState(jobId) : undefined;
  app.use(BOARD_PATH, boardActionGuard(jobState), serverAdapter.getRouter());

  return {
    app,
    async close() {
      await Promise.all(events.map((e) => e.close()));
      await Promise.all([...queues.values()].map((q) => q.close()));
    },
  };
}
