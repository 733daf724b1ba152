/** Readiness: each dependency checked with a short timeout, reporting which one failed. */
import { HeadBucketCommand } from '@aws-sdk/client-s3';
import type { FleetDeps } from '../runtime/deps.ts';

export type CheckResult = { ok: true; ms: number } | { ok: false; ms: number; error: string };

async function timed(check: () => Promise<unknown>, timeoutMs: number): Promise<CheckResult> {
  const start = performance.now();
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs).unref(),
      ),
    ]);
    return { ok: true, ms: Math.round(performance.now() - start) };
  } catch (err) {
    return { ok: false, ms: Math.round(performance.now() - start), error: (err as Error).message };
  }
}

export async function readiness(
  deps: FleetDeps,
  timeoutMs = 2_000,
): Promise<{ ok: boolean; checks: Record<string, CheckResult> }> {
  const [redis, postgres, mongo, s3] = await Promise.all([
    timed(() => deps.redis.ping(), timeoutMs),
    timed(() => deps.control.pool.query('SELECT 1'), timeoutMs),
    timed(
      () => deps.mongo.client(deps.env.DBFLEET_TENANT_MONGO_URL).db('admin').command({ ping: 1 }),
      timeoutMs,
    ),
    timed(() => deps.s3.send(new HeadBucketCommand({ Bucket: deps.env.DBFLEET_S3_BUCKET })), timeoutMs),
  ]);
  const checks = { redis, postgres, mongo, s3 };
  return { ok: Object.values(checks).every((c) => c.ok), checks };
}
