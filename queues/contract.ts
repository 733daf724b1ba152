/**
 * What every job contract is made of: a name, one zod schema for the payload (the TypeScript type and
 * the runtime check), a result type, and the retry/retention policy as plain data.
 */
import type { z } from 'zod';

export interface JobPolicy {
  /** Total attempts, the first included. */
  attempts: number;
  /** Exponential backoff: delayMs * 2^(attempt-1), spread by ±jitter (0..1) so retries do not stampede. */
  backoff: { delayMs: number; jitter: number };
  /** The handler's abort signal fires after this long; the attempt then fails as transient. */
  timeoutMs: number;
  /** How long finished jobs stay inspectable (and how long an idempotency key dedupes). */
  keepCompleted: { ageSeconds: number; count: number };
  keepFailed: { ageSeconds: number };
}

export interface JobContract<Name extends string, Schema extends z.ZodType, Result> {
  name: Name;
  description: string;
  payload: Schema;
  /** Phantom field carrying the result type; never read at run time. */
  result?: Result;
  policy: JobPolicy;
  /** Dotted payload paths that may hold personal data or secrets: hidden in the board and in logs. */
  sensitive: readonly string[];
  /**
   * Also overwrite the sensitive paths in the job's own data once it has finished, so that no raw
   * personal data stays in Redis (erase). A finished job redacted so cannot be re-run: enqueue anew.
   */
  redactWhenFinished?: boolean;
}

export function defineJob<Name extends string, Schema extends z.ZodType, Result>(
  contract: JobContract<Name, Schema, Result>,
): JobContract<Name, Schema, Result> {
  return contract;
}

const DAY = 24 * 3600;

/** Defaults that suit most database jobs; each contract overrides what differs. */
export const defaultPolicy: JobPolicy = {
  attempts: 5,
  backoff: { delayMs: 2_000, jitter: 0.5 },
  timeoutMs: 60 * 60_000,
  keepCompleted: { ageSeconds: 7 * DAY, count: 10_000 },
  keepFailed: { ageSeconds: 30 * DAY },
};
