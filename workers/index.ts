/**
 * The handler catalog: one entry per job type in queues/, under the same name. A job type missing here
 * fails the typecheck. `null` says, on purpose, that no worker serves that queue yet: its jobs can be
 * enqueued and seen in the board, and wait for a release that handles them.
 */
import type { JobName } from '../queues/index.ts';
import type { Handler } from '../src/runtime/handler.ts';
import { backup } from './backup.ts';
import { cleanup } from './cleanup.ts';
import { erase } from './erase.ts';
import { exportSubject } from './export-subject.ts';
import { loadFixtures } from './load-fixtures.ts';
import { migrate } from './migrate.ts';
import { restore } from './restore.ts';

export const handlers = {
  'load-fixtures': loadFixtures,
  migrate,
  backup,
  restore,
  cleanup,
  validate: null,
  erase,
  'export-subject': exportSubject,
} satisfies { [N in JobName]: Handler<N> | null };
