/**
 * The jobs one worker process is running, watched by a single sweeper: it fires each job's timeout and
 * tells long runners apart. One interval for all jobs instead of two timers and an abort listener per
 * job keeps a short job's overhead small at thousands of jobs per second. Timeouts are therefore
 * accurate to the sweep interval (a tenth of a second), which is fine for limits of minutes.
 */
export interface RunningJob {
  readonly count: { count: number };
  readonly startedAt: number;
  readonly deadline: number;
  readonly abort: AbortController;
  timedOut: boolean;
  /** Called once, when the job has been running for `longRunningMs`. */
  readonly onLongRunning: () => void;
  longRunning: boolean;
}

export class InFlight {
  readonly #jobs = new Set<RunningJob>();
  /** Jobs in flight by type and tenant, read by the metrics gauge when scraped (zeros kept). */
  readonly counts = new Map<string, { type: string; tenant: string; count: number }>();
  readonly #longRunningMs: number;
  readonly #timer: NodeJS.Timeout;

  constructor(options: { sweepMs?: number; longRunningMs?: number } = {}) {
    this.#longRunningMs = options.longRunningMs ?? 1_000;
    this.#timer = setInterval(() => this.#sweep(), options.sweepMs ?? 100);
    this.#timer.unref();
  }

  start(type: string, tenant: string, timeoutMs: number, onLongRunning: () => void): RunningJob {
    const startedAt = performance.now();
    const key = `${type}\u0000${tenant}`;
    let count = this.counts.get(key);
    if (!count) this.counts.set(key, (count = { type, tenant, count: 0 }));
    count.count++;
    const job: RunningJob = {
      count,
      startedAt,
      deadline: startedAt + timeoutMs,
      abort: new AbortController(),
      timedOut: false,
      onLongRunning,
      longRunning: false,
    };
    this.#jobs.add(job);
    return job;
  }

  finish(job: RunningJob): void {
    if (this.#jobs.delete(job)) job.count.count--;
  }

  /** Aborts every running job (worker shutdown): each stops at its next checkpoint. */
  abortAll(reason: unknown): void {
    for (const job of this.#jobs) job.abort.abort(reason);
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
        job.abort.abort(new Error('timed out'));
      }
    }
  }
}
