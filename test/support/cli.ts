/** Runs bin/dbfleet as a user runs it, with a test's deployment settings. */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Env } from '../../src/config/env.ts';
import { ROOT } from './fixtures.ts';

const run = promisify(execFile);

/** bin/dbfleet with the test's prefix; rejects with { code, stdout, stderr } on a non-zero exit. */
export const cliFor =
  (env: Env, vars: Record<string, string> = {}) =>
  (...args: string[]) =>
    run(path.join(ROOT, 'bin/dbfleet'), args, {
      env: { ...process.env, DBFLEET_PREFIX: env.DBFLEET_PREFIX, DBFLEET_LOG_LEVEL: 'warn', ...vars },
      timeout: 60_000,
    });
