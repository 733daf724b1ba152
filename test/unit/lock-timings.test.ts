import { expect, test } from 'vitest';
import { lockTimings } from '../../src/runtime/worker.ts';

test('a dead worker’s job is taken over within the lock duration plus at most 5 s', () => {
  expect(lockTimings(30_000)).toEqual({ lockDuration: 30_000, stalledInterval: 5_000 });
  expect(lockTimings(2_000)).toEqual({ lockDuration: 2_000, stalledInterval: 2_000 });
});
