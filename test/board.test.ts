/** The board through its real Express router and a real browser. */
import { appRoutes } from '@bull-board/api/dist/routes.js';
import { request } from 'node:http';
import { chromium } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { jobNames } from '../queues/index.ts';
import { BOARD_ACTIONS, hostName, isAllowedBoardRoute } from '../src/board/access.ts';
import { startBoard, type RunningBoard } from '../src/board/server.ts';
import type { FleetDeps } from '../src/runtime/deps.ts';
import { eventually, test as base } from './support/fixtures.ts';

const USER = 'operator';
const PASSWORD = 'a long board password';
const basic = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;

const withCredentials = (deps: FleetDeps): FleetDeps => ({
  ...deps,
  env: { ...deps.env, DBFLEET_BOARD_USER: USER, DBFLEET_BOARD_PASSWORD: PASSWORD },
});

/**
 * `board`: bound beyond loopback (all interfaces), with credentials; reached through 127.0.0.1.
 * `loopback`: the default deployment, on 127.0.0.1 without credentials.
 */
const test = base.extend<{ board: RunningBoard & { local: string }; loopback: RunningBoard }>({
  board: async ({ deps }, use) => {
    const running = await startBoard(withCredentials(deps), '0.0.0.0', 0);
    const port = new URL(running.url).port;
    await use({ ...running, close: running.close, local: `http://127.0.0.1:${port}` });
    await running.close();
  },
  loopback: async ({ deps }, use) => {
    const running = await startBoard(deps, '127.0.0.1', 0);
    await use(running);
    await running.close();
  },
});

/** A request to the board's API, as its UI sends it. */
async function boardApi(
  board: RunningBoard,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  const res = await fetch(`${board.url}/board${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.text() };
}

/** GET with a Host header of our choosing (fetch does not let a caller set it, as browsers do not). */
function getWithHost(url: string, host: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { ...headers, host }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
  });
}

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

  test('refuses adding jobs, rewriting their data and emptying, cleaning or obliterating queues', async ({
    loopback,
    client,
  }) => {
    const job = await client.enqueue('backup', { tenant: 'acme' }, { requestedBy: 'alice' });
    const queue = client.queue('backup');
    const before = { counts: await queue.getJobCounts(), data: (await queue.getJob(job.id))!.data };
    const forged = { v: 1, payload: { tenant: 'acme' }, requestedBy: 'someone else' };
    const refused: [method: string, path: string, body?: unknown][] = [
      ['POST', '/api/queues/backup/add', { name: 'backup@acme', data: forged }],
      ['PATCH', `/api/queues/backup/${job.id}/update-data`, forged],
      ['PATCH', `/api/queues/backup/${job.id}/priority`, { priority: 1 }],
      ['PUT', '/api/queues/backup/empty'],
      ['PUT', '/api/queues/backup/obliterate', {}],
      ['PUT', '/api/queues/backup/clean/waiting'],
      // Matches the allowed "remove a job" pattern, but Bull Board dispatches it to "clean every job
      // in a state": refused by the check on the dispatched route.
      ['PUT', '/api/queues/backup/clean/clean'],
      ['PUT', '/api/queues/backup/concurrency', { concurrency: 1 }],
      ['DELETE', `/api/queues/backup/${job.id}`],
      ['POST', '/api/a-route-a-later-bull-board-adds'],
    ];
    for (const [method, path, body] of refused) {
      const res = await boardApi(loopback, method, path, body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body, `${method} ${path}`).toMatch(/is not allowed from the board/);
      expect(res.body, `${method} ${path}`).toMatch(/use the dbfleet CLI/);
    }
    expect(JSON.parse((await boardApi(loopback, 'POST', '/api/queues/backup/add')).body)).toEqual({
      error: 'POST /board/api/queues/backup/add is not allowed from the board',
      message:
        'the board may only retry, remove and promote jobs and pause and resume queues; ' +
        'use the dbfleet CLI for anything else (dbfleet enqueue validates the payload and records who asked)',
    });
    const after = { counts: await queue.getJobCounts(), data: (await queue.getJob(job.id))!.data };
    expect(after).toEqual(before);
    expect(after.counts.waiting).toBe(1);
    expect(await queue.isPaused()).toBe(false);
  });

  test('retries, removes and promotes jobs and pauses and resumes queues', async ({
    loopback,
    client,
    startWorker,
    tenant,
  }) => {
    // A failed job: load-fixtures for a tenant that was never added fails at once, not retried.
    const worker = startWorker({ queues: ['load-fixtures'] });
    // A completed one: its run is over, and it is not run again from the board.
    const done = await client.enqueue('load-fixtures', {
      tenant: tenant.id,
      target: { store: 'mongo', name: 'sessions' },
      source: { type: 'inline', rows: [] },
    });
    await done.waitForResult();
    const failing = await client.enqueue('load-fixtures', {
      tenant: 'nosuchtenant',
      target: { store: 'mongo', name: 'sessions' },
      source: { type: 'inline', rows: [{ _id: 'a' }] },
    });
    const loads = client.queue('load-fixtures');
    await eventually(async () => (await loads.getJob(failing.id))?.failedReason);
    await worker.close();
    expect(await loads.getJob(failing.id).then((j) => j!.getState())).toBe('failed');
    const completedRetry = await boardApi(loopback, 'PUT', `/api/queues/load-fixtures/${done.id}/retry`);
    expect(completedRetry.status).toBe(403);
    expect((await boardApi(loopback, 'PUT', '/api/queues/load-fixtures/retry/completed')).status).toBe(403);
    expect(await loads.getJob(done.id).then((j) => j!.getState())).toBe('completed');
    expect((await boardApi(loopback, 'PUT', `/api/queues/load-fixtures/${failing.id}/retry`)).status).toBe(
      204,
    );
    expect(await loads.getJob(failing.id).then((j) => j!.getState())).toBe('waiting');

    const backups = client.queue('backup');
    const doomed = await client.enqueue('backup', { tenant: 'acme' });
    expect((await boardApi(loopback, 'PUT', `/api/queues/backup/${doomed.id}/clean`)).status).toBe(204);
    expect(await backups.getJob(doomed.id)).toBeUndefined();

    const later = await client.enqueue('backup', { tenant: 'acme' }, { delayMs: 600_000 });
    expect(await backups.getJob(later.id).then((j) => j!.getState())).toBe('delayed');
    expect((await boardApi(loopback, 'PUT', `/api/queues/backup/${later.id}/promote`)).status).toBe(204);
    expect(await backups.getJob(later.id).then((j) => j!.getState())).toBe('waiting');

    expect((await boardApi(loopback, 'PUT', '/api/queues/backup/pause')).status).toBe(200);
    expect(await backups.isPaused()).toBe(true);
    expect((await boardApi(loopback, 'PUT', '/api/queues/backup/resume')).status).toBe(200);
    expect(await backups.isPaused()).toBe(false);
  });

  test('on loopback without credentials, serves only requests addressed to a loopback name', async ({
    loopback,
    board,
  }) => {
    const port = new URL(loopback.url).port;
    const url = `${loopback.url}/board/api/queues`;
    for (const host of [`localhost:${port}`, `127.0.0.1:${port}`, '127.1.2.3', `[::1]:${port}`, 'LOCALHOST'])
      expect(await getWithHost(url, host), host).toBe(200);
    // What a page on another site sends once it has rebound its name to 127.0.0.1.
    for (const host of [
      'evil.example',
      `evil.example:${port}`,
      'localhost.evil.example',
      '127.0.0.1.evil.example',
      '[::2]',
    ]) {
      expect(await getWithHost(url, host), host).toBe(403);
      expect(await getWithHost(`${loopback.url}/readyz`, host), host).toBe(403);
    }
    // With credentials, the board may be reached under any name (it may listen beyond loopback).
    const status = await getWithHost(`${board.local}/board/api/queues`, 'board.example.com', {
      authorization: basic,
    });
    expect(status).toBe(200);
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

describe('board allow-list', () => {
  it("lets through exactly the listed actions among Bull Board's routes, and every read", () => {
    const mutating = appRoutes.api.flatMap((r) =>
      [r.method].flat().map((method) => ({ method, route: [r.route].flat()[0]! })),
    );
    const allowed = mutating.filter((r) => r.method !== 'get' && isAllowedBoardRoute(r.method, r.route));
    expect(allowed.map((r) => `${r.method} ${r.route}`).sort()).toEqual(
      BOARD_ACTIONS.map((a) => `${a.method} ${a.route}`).sort(),
    );
    expect(isAllowedBoardRoute('get', '/api/queues')).toBe(true);
    expect(isAllowedBoardRoute('post', '/api/queues/:queueName/add')).toBe(false);
  });

  it('reads the host name from a Host header', () => {
    expect(hostName('localhost:3000')).toBe('localhost');
    expect(hostName('[::1]:3000')).toBe('::1');
    expect(hostName('[::1]')).toBe('::1');
    expect(hostName('127.0.0.1')).toBe('127.0.0.1');
    expect(hostName('Evil.Example:80')).toBe('evil.example');
    expect(hostName('a:b:c')).toBeUndefined();
    expect(hostName('')).toBeUndefined();
  });
});
