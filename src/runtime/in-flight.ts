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

export class RunningJob<S = unknown> {
  readonly startedAt = performance.now();
  readonly deadline: number;
  timedOut = false;
  longRunning = false;
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;
  /** Neighbours in the InFlight list: adding and removing a job costs two stores, no hashing. */
  prev: RunningJob<S> | undefined;
  next: RunningJob<S> | undefined;

  readonly count: InFlightCount;
  /** What InFlight's long-running callback gets for this job (the runtime passes its audit event). */
  readonly subject: S;

  constructor(count: InFlightCount, timeoutMs: number, subject: S) {
    this.count = count;
    this.deadline = this.startedAt + timeoutMs;
    this.subject = subject;
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

export interface InFlightOptions<S> {
  sweepMs?: number;
  longRunningMs?: number;
  /**
   * Called once for each job still running after `longRunningMs`, with the subject it was started
   * with: one callback for all jobs rather than a closure built for every job.
   */
  onLongRunning?: (subject: S) => void;
}

export class InFlight<S = unknown> {
  /** Running jobs as a doubly linked list (the newest first). */
  #head: RunningJob<S> | undefined;
  /** Jobs in flight by type, then tenant: the metrics gauge reads them when scraped. */
  readonly #counts = new Map<string, Map<string, InFlightCount>>();
  readonly #longRunningMs: number;
  readonly #onLongRunning: (subject: S) => void;
  readonly #timer: NodeJS.Timeout;

  constructor(options: InFlightOptions<S> = {}) {
    this.#longRunningMs = options.longRunningMs ?? 1_000;
    this.#onLongRunning = options.onLongRunning ?? (() => {});
    this.#timer = setInterval(() => this.#sweep(), options.sweepMs ?? 100);
    this.#timer.unref();
  }

  start(type: string, tenant: string, timeoutMs: number, subject: S): RunningJob<S> {
    // By type, then tenant: no key string built and hashed per job.
    let byTenant = this.#counts.get(type);
    if (!byTenant) this.#counts.set(type, (byTenant = new Map()));
    let count = byTenant.get(tenant);
    if (!count) byTenant.set(tenant, (count = { type, tenant, count: 0 }));
    count.count++;
    const job = new RunningJob(count, timeoutMs, subject);
    job.next = this.#head;
    if (this.#head) this.#head.prev = job;
    this.#head = job;
    return job;
  }

  /** Jobs in flight by type and tenant (zeros kept), for the metrics gauge when scraped. */
  *counts(): IterableIterator<InFlightCount> {
    for (const byTenant of this.#counts.values()) yield* byTenant.values();
  }

  finish(job: RunningJob<S>): void {
    if (job.prev === undefined && this.#head !== job) return; // finished already
    if (job.prev) job.prev.next = job.next;
    else this.#head = job.next;
    if (job.next) job.next.prev = job.prev;
    job.prev = job.next = undefined;
    job.count.count--;
  }

  /** Aborts every running job (worker shutdown): each stops at its next checkpoint. */
  abortAll(reason: unknown): void {
    this.#forEach((job) => job.abort(reason));
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #sweep(): void {
    const now = performance.now();
    this.#forEach((job) => {
      if (!job.longRunning && now - job.startedAt >= this.#longRunningMs) {
        job.longRunning = true;
        this.#onLongRunning(job.subject);
      }
      if (!job.timedOut && now >= job.deadline) {
        job.timedOut = true;
        job.abort(new Error('timed out'));
      }
    });
  }

  /** Visits every running job; `fn` may finish the job it is given (the next one is taken first). */
  #forEach(fn: (job: RunningJob<S>) => void): void {
    for (let job = this.#head, next; job; job = next) {
      next = job.next;
      fn(job);
    }
  }
}
