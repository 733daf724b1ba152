/**
 * The jobs one worker process is running, watched by a single sweeper: it fires each job's timeout and
 * tells long runners apart. One interval for all jobs instead of two timers and an abort listener per
 * job keeps a short job's overhead small at thousands of jobs per second. Timeouts are therefore
 * accurate to the sweep interval (a tenth of a second), which is fine for limits of minutes.
 */
export interface InFlightCount {
  readonly type: string;
  readonly tenant: string;
  count: number;
}

export class RunningJob {
  readonly startedAt = performance.now();
  readonly deadline: number;
  timedOut = false;
  longRunning = false;
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  readonly count: InFlightCount;
  /** Called once, when the job has been running for `longRunningMs`. */
  readonly onLongRunning: () => void;

  constructor(count: InFlightCount, timeoutMs: number, onLongRunning: () => void) {
    this.count = count;
    this.deadline = this.startedAt + timeoutMs;
    this.onLongRunning = onLongRunning;
  }

  /** Built on first use: most short jobs never look at it. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

export class InFlight {
  readonly #jobs = new Set<RunningJob>();
  /** Jobs in flight by type, then tenant: the metrics gauge reads them when scraped. */
  readonly #counts = new Map<string, Map<string, InFlightCount>>();
  readonly #longRunningMs: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: { sweepMs?: number; longRunningMs?: number } = {}) {
    this.#longRunningMs = options.longRunningMs ?? 1_000;
    this.#timer = setInterval(() => this.#sweep(), options.sweepMs ?? 100);
    this.#timer.unref();
  }

  start(type: string, tenant: string, timeoutMs: number, onLongRunning: () => void): RunningJob {
    // By type, then tenant: no key string built and hashed per job.
    let byTenant = this.#counts.get(type);
    if (!byTenant) this.#counts.set(type, (byTenant = new Map()));
    let count = byTenant.get(tenant);
    if (!count) byTenant.set(tenant, (count = { type, tenant, count: 0 }));
    count.count++;
    const job = new RunningJob(count, timeoutMs, onLongRunning);
    this.#jobs.add(job);
    return job;
  }

  /** Jobs in flight by type and tenant (zeros kept), for the metrics gauge when scraped. */
  *counts(): IterableIterator<InFlightCount> {
    for (const byTenant of this.#counts.values()) yield* byTenant.values();
  }

  finish(job: RunningJob): void {
    if (this.#jobs.delete(job)) job.count.count--;
  }

  /** Aborts every running job (worker shutdown): each stops at its next checkpoint. */
  abortAll(reason: unknown): void {
    for (const job of this.#jobs) job.abort(reason);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #sweep(): void {
    const now = performance.now();
    for (const job of this.#jobs) {
      if (!job.longRunning && now - job.startedAt >= this.#longRunningMs) {
        job.longRunning = true;
        job.onLongRunning();
      }
      if (!job.timedOut && now >= job.deadline) {
        job.timedOut = true;
        job.abort(new Error('timed out'));
      }
    }
  }
}
