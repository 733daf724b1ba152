/**
 * Starts the real services once for the whole run (scripts/services.sh, fast when already up) and
 * hands their connection settings to every test file.
 */
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

declare module 'vitest' {
  export interface ProvidedContext {
    servicesEnv: Record<string, string>;
  }
}

export function parseExports(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of text.matchAll(/^export ([A-Z0-9_]+)=(.*)$/gm)) env[m[1]!] = m[2]!;
  return env;
}

/** The board's browser test drives Debian's Chromium; install it on a machine that lacks it. */
function ensureChromium(): void {
  if (existsSync('/usr/bin/chromium')) return;
  execFileSync(
    'bash',
    ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'],
    {
      stdio: 'inherit',
    },
  );
}

/** The prefixes of the tests' Redis keys (`test-xxxxxxxx`) present now. */
async function testPrefixes(redis: Redis): Promise<Set<string>> {
  const prefixes = new Set<string>();
  for await (const keys of redis.scanStream({ match: 'test-*', count: 1000 }) as AsyncIterable<string[]>)
    for (const key of keys) prefixes.add(key.split(':')[0]!);
  return prefixes;
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  ensureChromium();
  const script = path.resolve(import.meta.dirname, '../../scripts/services.sh');
  const out = execFileSync('bash', [script, 'up'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const env = parseExports(out);
  project.provide('servicesEnv', env);
  const redis = new Redis(env.DBFLEET_REDIS_URL!);
  const before = await testPrefixes(redis);
  // Every test deletes its keys; what remains was written by something still running after its
  // test's cleanup (a worker, a child process) and would pile up in a long-lived Redis.
  return async () => {
    try {
      const left = [...(await testPrefixes(redis))].filter((p) => !before.has(p));
      if (left.length > 0) {
        // An error thrown here is only printed; the exit code is what CI sees.
        console.error(`tests left Redis keys behind under ${left.length} prefix(es): ${left.join(', ')}`);
        process.exitCode = 1;
      }
    } finally {
      redis.disconnect();
    }
  };
}
