/**
 * A lock in MongoDB for servers without transactions or advisory locks: one document per lock name,
 * taken by an atomic insert against the unique `_id`, held by renewing a lease, and taken over only
 * once the lease has lapsed. Time is always the server's (`$currentDate`), never this host's clock,
 * so hosts with skewed clocks cannot steal a live lock.
 */
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Collection, Db } from 'mongodb';
import { TransientError } from '../errors.ts';

interface LockDoc {
  _id: string;
  owner: string;
  leaseMs: number;
  renewedAt: Date;
  /** Bumped by every renewal: a takeover compares it, so a renewal racing the takeover wins. */
  generation: number;
}

export interface LeaseLockOptions {
  leaseMs: number;
  /** Give up (transient error, the job retries) after waiting this long. */
  waitMs: number;
  /** Who is asking, for operators reading the lock document. */
  holder?: string;
}

const isDuplicateKey = (err: unknown) => (err as { code?: number }).code === 11000;

export class LeaseLock {
  readonly owner = randomUUID();
  readonly #locks: Collection<LockDoc>;
  readonly #clock: Collection<{ _id: string; now: Date }>;
  readonly #name: string;
  readonly #options: LeaseLockOptions;

  constructor(db: Db, name: string, options: LeaseLockOptions) {
    this.#locks = db.collection<LockDoc>('_dbfleet_locks');
    this.#clock = db.collection('_dbfleet_clock');
    this.#name = name;
    this.#options = options;
  }

  /** The server's current time, read by writing it. */
  async serverNow(): Promise<Date> {
    const doc = await this.#clock.findOneAndUpdate(
      { _id: this.owner },
      { $currentDate: { now: true } },
      { upsert: true, returnDocument: 'after' },
    );
    return doc!.now;
  }

  /** One attempt: take a free lock, or take over one whose lease has lapsed. */
  async tryAcquire(): Promise<boolean> {
    try {
      // The filter names us as owner, so when another owner holds the document the upsert inserts,
      // and the unique _id refuses it: that refusal is the atomic "already held".
      await this.#locks.updateOne(
        { _id: this.#name, owner: this.owner },
        {
          $set: { owner: this.owner, leaseMs: this.#options.leaseMs, holder: this.#options.holder ?? null },
          $currentDate: { renewedAt: true },
          $inc: { generation: 1 },
        },
        { upsert: true },
      );
      return true;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
    const held = await this.#locks.findOne({ _id: this.#name });
    if (!held) return false; // released meanwhile: the next attempt inserts
    const now = await this.serverNow();
    if (now.getTime() < held.renewedAt.getTime() + held.leaseMs) return false;
    const taken = await this.#locks.updateOne(
      { _id: this.#name, owner: held.owner, generation: held.generation },
      {
        $set: { owner: this.owner, leaseMs: this.#options.leaseMs, holder: this.#options.holder ?? null },
        $currentDate: { renewedAt: true },
        $inc: { generation: 1 },
      },
    );
    return taken.matchedCount === 1;
  }

  /** Extends the lease; false when the lock is no longer ours. */
  async renew(): Promise<boolean> {
    const r = await this.#locks.updateOne(
      { _id: this.#name, owner: this.owner },
      { $currentDate: { renewedAt: true }, $inc: { generation: 1 } },
    );
    return r.matchedCount === 1;
  }

  async release(): Promise<void> {
    await this.#locks.deleteOne({ _id: this.#name, owner: this.owner });
    await this.#clock.deleteOne({ _id: this.owner });
  }

  /**
   * Runs `fn` holding the lock, renewing the lease every third of it. If a renewal finds the lock
   * gone (this process stalled past its lease and someone took over), `fn`'s signal fires.
   */
  async hold<T>(fn: (signal: AbortSignal) => Promise<T>, signal?: AbortSignal): Promise<T> {
    const deadline = Date.now() + this.#options.waitMs;
    while (!(await this.tryAcquire())) {
      signal?.throwIfAborted();
      if (Date.now() > deadline)
        throw new TransientError('lock_busy', `lock ${this.#name} is held by another runner`);
      await sleep(Math.min(500, this.#options.leaseMs / 4));
    }
    const lost = new AbortController();
    const timer = setInterval(() => {
      this.renew().then(
        (ours) => ours || lost.abort(new TransientError('lock_lost', `lock ${this.#name} was taken over`)),
        () => undefined, // a failed renewal is retried at the next tick; the lease has slack for it
      );
    }, this.#options.leaseMs / 3);
    try {
      return await fn(signal ? AbortSignal.any([signal, lost.signal]) : lost.signal);
    } finally {
      clearInterval(timer);
      await this.release().catch(() => undefined);
    }
  }
}
