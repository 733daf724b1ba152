/**
 * Starts the real services once for the whole run (scripts/services.sh, fast when already up) and
 * hands their connection settings to every test file.
 */
import { execFileSync } from 'node:child_process';
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

export default function setup(project: TestProject): void {
  ensureChromium();
  const script = path.resolve(import.meta.dirname, '../../scripts/services.sh');
  const out = execFileSync('bash', [script, 'up'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  project.provide('servicesEnv', parseExports(out));
}
