/** Prometheus metrics (prom-client). Each process owns a registry; the board and workers expose theirs. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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

export function createFleetMetrics(options: { defaults?: boolean } = {}): FleetMetrics {
  const registry = new Registry();
  const inFlightSources = new Set<InFlightSource>();
  if (options.defaults) collectDefaultMetrics({ register: registry, prefix: 'dbfleet_process_' });
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

/** Failure reasons are stored as `[code] message`; the code is the bounded label. */
export function reasonCode(failedReason: string | undefined): string {
  return /^\[([a-z0-9_:]+)\]/.exec(failedReason ?? '')?.[1] ?? 'unknown';
}
