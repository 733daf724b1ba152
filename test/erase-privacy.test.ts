/**
 * After an erasure, the subject's id, email and name are nowhere the fleet keeps anything: every
 * Redis key of the deployment, the worker's log, the control database, the metrics, the board.
 */
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { startBoard } from '../src/board/server.ts';
import { displayName, email, fillDemo, erased } from './support/erasure.ts';
import { drainAudit, freePort, test } from './support/fixtures.ts';

/** Every key and value in Redis, whatever its type, as text. */
async function redisText(redis: Redis): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 1000);
    cursor = next;
    for (const key of keys) {
      parts.push(key);
      const type = await redis.type(key);
      const value =
        type === 'string'
          ? await redis.getBuffer(key).then((b) => b?.toString('latin1'))
          : type === 'hash'
            ? await redis.hgetall(key)
            : type === 'list'
              ? await redis.lrange(key, 0, -1)
              : type === 'set'
                ? await redis.smembers(key)
                : type === 'zset'
                  ? await redis.zrange(key, '0', '-1')
                  : type === 'stream'
                    ? await redis.xrange(key, '-', '+')
                    : null;
      parts.push(JSON.stringify(value));
    }
  } while (cursor !== '0');
  return parts.join('\n');
}

test('after an erase (and a failed one), the subject is in no Redis key, log line, control-database row, metric or board page', async ({
  deps,
  tenant,
  client,
  spawnWorker,
}) => {
  // Ids no other test uses, so that a find is this test's.
  const ids = await fillDemo(tenant, 10, 9_183_000);
  const subject = ids[3]!;
  const secrets = [String(subject), email(subject), displayName(subject)];
  const port = await freePort();
  const worker = await spawnWorker({
    args: ['--metrics-port', String(port)],
    env: { DBFLEET_LOG_LEVEL: 'debug' },
  });

  const dry = await erased(client, tenant.id, String(subject), { dryRun: true });
  expect(dry.deleted).toBe(13);
  const done = await (
    await client.enqueue(
      'erase',
      { tenant: tenant.id, subject: { id: String(subject) } },
      { requestedBy: 'dpo@example.test' },
    )
  ).waitForResult({ timeoutMs: 60_000 });
  expect(done).toMatchObject({ verified: true, deleted: 13 });
  // One that fails: its payload and failure reason must not carry the subject either.
  await tenant.pg.withClient((c) => c.query('ALTER TABLE consent RENAME COLUMN purpose TO goal'));
  await tenant.pg.withClient((c) => c.query('ALTER TABLE users RENAME COLUMN id TO user_id'));
  await expect(erased(client, tenant.id, email(subject))).rejects.toThrow(/map_mismatch|does not fit/);

  // The payloads are redacted once the jobs have finished; wait for that.
  const queue = client.queue('erase');
  await expect
    .poll(async () => (await queue.getJobs(['completed', 'failed'])).every((j) => j.data.redacted), {
      timeout: 10_000,
    })
    .toBe(true);
  await drainAudit(deps);

  const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  expect(metrics).toContain('erase');
  const board = await startBoard(deps, '127.0.0.1', 0);
  let boardText: string;
  try {
    const pages = await Promise.all(
      ['completed', 'failed'].map(async (status) =>
        (await fetch(`${board.url}/board/api/queues?activeQueue=erase&status=${status}&page=1`)).text(),
      ),
    );
    boardText = pages.join('\n');
    expect(boardText).toContain('"redacted"');
  } finally {
    await board.close();
  }
  const control = await deps.control.pool.query<{ t: string }>(
    `SELECT (SELECT coalesce(json_agg(e), '[]') FROM dbfleet.job_event_log e WHERE prefix = $1)::text ||
            (SELECT coalesce(json_agg(e), '[]') FROM dbfleet.erasures e WHERE prefix = $1)::text ||
            (SELECT coalesce(json_agg(e), '[]') FROM dbfleet.load_rejections e WHERE prefix = $1)::text ||
            (SELECT coalesce(json_agg(e), '[]') FROM dbfleet.audit_dead_letters e WHERE prefix = $1)::text AS t`,
    [deps.prefix],
  );
  worker.proc.kill('SIGTERM');
  await worker.exited;
  const places = {
    redis: await redisText(deps.redis),
    log: worker.output(),
    control: control.rows[0]!.t,
    metrics,
    board: boardText,
  };
  // The places hold what they should: the jobs, their events, the erasure.
  expect(places.control).toContain(done.erasureId);
  expect(places.log).toContain(done.erasureId ?? 'none');
  for (const [place, text] of Object.entries(places))
    for (const secret of secrets) expect(text.includes(secret), `${place} holds ${secret}`).toBe(false);
});
