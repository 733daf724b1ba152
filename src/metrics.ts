/** Prometheus metrics (prom-client). Each process owns a registry; the board and workers expose theirs. */
import type { Redis } from 'ioredis';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { auditStreamKey } from './control/audit-outbox.ts';
import type { ControlDb } from './control/control-db.ts';
import type { Logger } from './logger.ts';

/** Something that knows how many jobs it runs, by type and tenant (a worker's InFlight). */
export interface InFlightSource {
  counts(): Iterable<{ type: string; tenant: string; count: number }>;
}

export interface FleetMetrics {
  registry: Registry;
  jobDuration: Histogram<'type' | 'outcome'>;
  failures: Counter<'type' | 'reason'>;
  /** Read from the registered sources when scraped, so running a job costs no metric update. */
  inFlight: Gauge<'type' | 'tenant'>;
  inFlightSources: Set<InFlightSource>;
}

/** Where the audit gauges read one prefix's outbox stream and dead letters (a process's deps). */
export interface AuditMetricsSource {
  redis: Redis;
  control: ControlDb;
  prefix: string;
  log: Logger;
}

export function createFleetMetrics(
  options: { defaults?: boolean; audit?: AuditMetricsSource } = {},
): FleetMetrics {
  const registry = new Registry();
  const inFlightSources = new Set<InFlightSource>();
  if (options.defaults) collectDefaultMetrics({ register: registry, prefix: 'dbfleet_process_' });
  if (options.audit) registerAuditGauges(registry, options.audit);
  return {
    registry,
    jobDuration: new Histogram({
      name: 'dbfleet_job_duration_seconds',
      help: 'Time from a job starting to finishing, by type and outcome',
      labelNames: ['type', 'outcome'],
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600],
      registers: [registry],
    }),
    failures: new Counter({
      name: 'dbfleet_job_failures_total',
      help: 'Failed attempts by job type and reason code (permanent and transient)',
      labelNames: ['type', 'reason'],
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'dbfleet_jobs_in_flight',
      help: 'Jobs being processed right now, by type and tenant',
      labelNames: ['type', 'tenant'],
      registers: [registry],
      collect() {
        const totals = new Map<string, { type: string; tenant: string; count: number }>();
        for (const source of inFlightSources)
          for (const c of source.counts()) {
            const key = `${c.type}\u0000${c.tenant}`;
            const total = totals.get(key);
            if (total) total.count += c.count;
            else totals.set(key, { ...c });
          }
        this.reset();
        for (const { type, tenant, count } of totals.values()) this.set({ type, tenant }, count);
      },
    }),
    inFlightSources,
  };
}

/**
 * The audit outbox's health, read when scraped: entries waiting in the stream, and entries the drainer
 * set aside. A value that cannot be read (Redis or the control database down) is NaN, not a stale or
 * made-up number.
 */
function registerAuditGauges(registry: Registry, { redis, control, prefix, log }: AuditMetricsSource): void {
  const gauge = (name: string, help: string, read: () => Promise<number>) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        try {
          this.set(await read());
        } catch (err) {
          this.set(NaN);
          log.warn({ err, metric: name }, 'could not read a metric');
        }
      },
    });
  gauge(
    'dbfleet_audit_backlog',
    'Audit stream entries (events of one tick of one worker each) waiting for the drainer to copy them to PostgreSQL',
    () => redis.xlen(auditStreamKey(prefix)),
  );
  gauge(
    'dbfleet_audit_dead_letters',
    'Audit stream entries the drainer could not copy, kept in dbfleet.audit_dead_letters',
    () => control.auditDeadLetters(prefix),
  );
}

/** Failure reasons are stored as `[code] message`; the code is the bounded label. */
export function reasonCode(failedReason: string | undefined): string {
  return /^\[([a-z0-9_:]+)\]/.exec(failedReason ?? '')?.[1] ?? 'unknown';
}
