/** The board through its real Express router and a real browser. */
import { chromium } from 'playwright-core';
import { describe, expect } from 'vitest';
import { jobNames } from '../queues/index.ts';
import { startBoard, type RunningBoard } from '../src/board/server.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { test as base } from './support/fixtures.ts';

const USER = 'operator';
const PASSWORD = 'a long board password';
const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

const withCredentials = (deps: FleetDeps): FleetDeps => ({
  ...deps,
  env: { ...deps.env, DBFLEET_BOARD_USER: USER, DBFLEET_BOARD_PASSWORD: PASSWORD },
});

/** A board bound beyond loopback (all interfaces), with credentials; reached through 127.0.0.1. */
const test = base.extend<{ board: RunningBoard & { local: string } }>({
  board: async ({ deps }, use) => {
    const running = await startBoard(withCredentials(deps), '0.0.0.0', 0);
    const port = new URL(running.url).port;
    await use({ ...running, close: running.close, local: `http://127.0.0.1:${port}` });
    await running.close();
  },
});

/**
 * Each sample line of the Prometheus text format: name, optional labels, a value. Prometheus reads
 * values with Go's ParseFloat, which takes NaN and Inf in any letter case.
 */
const SAMPLE =
  /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? (-?[0-9.e+-]+|nan|[+-]?inf)( \d+)?$/i;

describe('board', () => {
  test('refuses to start beyond loopback without credentials', async ({ deps }) => {
    await expect(startBoard(deps, '0.0.0.0', 0)).rejects.toThrow(
      /refusing to serve the board on 0\.0\.0\.0 without credentials/,
    );
  });

  test('401 without credentials; health endpoints stay open for probes', async ({ board }) => {
    for (const path of ['/board', '/metrics', '/board/api/queues']) {
      const res = await fetch(board.local + path);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Basic/);
    }
    const wrong = await fetch(`${board.local}/board`, {
      headers: { authorization: `Basic ${btoa(`${USER}:nope`)}` },
    });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${board.local}/healthz`)).status).toBe(200);
    const ready = await fetch(`${board.local}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ok: true,
      checks: { redis: { ok: true }, postgres: { ok: true }, mongo: { ok: true }, s3: { ok: true } },
    });
  });

  test('with credentials, the queues page renders every queue in headless Chromium', async ({ board }) => {
    const browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    try {
      const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD } });
      const page = await context.newPage();
      await page.goto(`${board.local}/board`);
      await page.getByText('load-fixtures').first().waitFor({ timeout: 30_000 });
      const text = await page.locator('body').innerText();
      for (const name of jobNames) expect(text).toContain(name);
    } finally {
      await browser.close();
    }
  });

  test('/metrics parses as Prometheus text and counts jobs by queue and state', async ({ board, client }) => {
    await client.enqueue('backup', { tenant: 'acme' });
    const res = await fetch(`${board.local}/metrics`, { headers: { authorization: basic } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const lines = (await res.text()).split('\n').filter((l) => l && !l.startsWith('#'));
    const bad = lines.filter((l) => !SAMPLE.test(l));
    expect(bad).toEqual([]);
    expect(lines).toContain('dbfleet_queue_jobs{queue="backup",state="waiting"} 1');
    expect(lines.some((l) => l.startsWith('dbfleet_queue_jobs{queue="erase",state="failed"}'))).toBe(true);
  });

  test('personal data in job data is hidden in the board', async ({ board, client }) => {
    await client.enqueue('erase', { tenant: 'acme', subject: { id: 'alice@example.com' } });
    const res = await fetch(`${board.local}/board/api/queues?activeQueue=erase&status=waiting&page=1`, {
      headers: { authorization: basic },
    });
    expect(res.status).toBe(200);
    const body = await res.text();
    expect(body).toContain('[redacted]');
    expect(body).not.toContain('alice@example.com');
  });
});
