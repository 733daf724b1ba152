import { afterEach, describe, expect, test, vi } from 'vitest';
import { InFlight, type InFlightCount } from '../../src/runtime/in-flight.ts';

const snapshot = (counts: Iterable<InFlightCount>) =>
  Object.fromEntries([...counts].map((c) => [`${c.type}/${c.tenant}`, c.count]));

describe('InFlight', () => {
  const made: InFlight<string>[] = [];
  const inFlight = (options: ConstructorParameters<typeof InFlight<string>>[0] = {}) => {
    const list = new InFlight<string>(options);
    made.push(list);
    return list;
  };
  afterEach(() => {
    for (const list of made.splice(0)) list.stop();
  });

  test('counts by type and tenant; a job removed from the middle, the ends, twice, or while aborted', () => {
    const list = inFlight();
    const a = list.start('backup', 'acme', 60_000, 'a');
    const b = list.start('backup', 'acme', 60_000, 'b');
    const c = list.start('erase', 'globex', 60_000, 'c');
    expect(snapshot(list.counts())).toEqual({ 'backup/acme': 2, 'erase/globex': 1 });

    list.finish(b); // the middle of the list
    list.finish(b); // already finished: no second decrement
    expect(snapshot(list.counts())).toEqual({ 'backup/acme': 1, 'erase/globex': 1 });

    // A job that finishes itself as it is aborted (its abort listener ends it) does not cut the walk short.
    const d = list.start('backup', 'acme', 60_000, 'd');
    d.signal.addEventListener('abort', () => list.finish(d));
    const reason = new Error('shutting down');
    list.abortAll(reason);
    expect([a.aborted, b.aborted, c.aborted, d.aborted]).toEqual([true, false, true, true]);
    expect(a.signal.reason).toBe(reason);

    list.finish(c); // the head
    list.finish(a); // the last one
    expect(snapshot(list.counts())).toEqual({ 'backup/acme': 0, 'erase/globex': 0 });
    list.abortAll(new Error('nothing left to abort'));
    expect(b.aborted).toBe(false);
  });

  test('the sweeper reports each long runner once, with its subject, and fires timeouts', async () => {
    const longRunners: string[] = [];
    const list = inFlight({ sweepMs: 5, longRunningMs: 20, onLongRunning: (s) => longRunners.push(s) });
    const slow = list.start('validate', 'acme', 60_000, 'slow');
    const quick = list.start('validate', 'acme', 60_000, 'quick');
    list.finish(quick);
    const doomed = list.start('validate', 'acme', 30, 'doomed');

    await vi.waitFor(() => expect(doomed.timedOut).toBe(true), { timeout: 2_000 });
    expect(doomed.aborted).toBe(true);
    expect(slow.aborted).toBe(false);
    await vi.waitFor(() => expect(longRunners.sort()).toEqual(['doomed', 'slow']), { timeout: 2_000 });
    await new Promise((resolve) => setTimeout(resolve, 40)); // several more sweeps
    expect(longRunners).toHaveLength(2);
  });
});
