/**
 * The job catalog: every contract, by name. Producers, workers, the board and the CLI all read it,
 * so a job type exists in exactly one place.
 */
import type { z } from 'zod';
import { backup } from './backup.ts';
import { cleanup } from './cleanup.ts';
import { erase } from './erase.ts';
import { exportSubject } from './export-subject.ts';
import { loadFixtures } from './load-fixtures.ts';
import { migrate } from './migrate.ts';
import { restore } from './restore.ts';
import { validate } from './validate.ts';

export const catalog = {
  'load-fixtures': loadFixtures,
  migrate,
  backup,
  restore,
  cleanup,
  validate,
  erase,
  'export-subject': exportSubject,
} as const;

export type Catalog = typeof catalog;
export type JobName = keyof Catalog;
/** The payload a producer passes (defaults may be left out). */
export type PayloadInput<N extends JobName> = z.input<Catalog[N]['payload']>;
/** The payload a handler receives (defaults filled in). */
export type Payload<N extends JobName> = z.output<Catalog[N]['payload']>;
export type Result<N extends JobName> = NonNullable<Catalog[N]['result']>;

export const jobNames = Object.keys(catalog) as JobName[];

export function isJobName(name: string): name is JobName {
  return Object.hasOwn(catalog, name);
}

export type { JobContract, JobPolicy } from './contract.ts';
