/**
 * What a BullMQ job carries: the validated payload plus who asked. Versioned so that workers can read
 * jobs queued by older producers (fields are only ever added, optional).
 */
import { createHash } from 'node:crypto';
import { catalog, type JobName, type Payload } from '../../queues/index.ts';
import { ValidationError, zodIssues } from '../errors.ts';

export interface JobEnvelope<P = unknown> {
  v: 1;
  payload: P;
  requestedBy?: string;
  /** Set once a job has added its child jobs (fan-out), so that its second run does not add them again. */
  fannedOut?: boolean;
}

/** Validates a payload against its contract; throws a ValidationError naming every bad field. */
export function parsePayload<N extends JobName>(name: N, input: unknown): Payload<N> {
  const parsed = catalog[name].payload.safeParse(input);
  if (!parsed.success) throw new ValidationError(`${name} payload`, zodIssues(parsed.error));
  return parsed.data as Payload<N>;
}

/**
 * Validates a producer's payload and wraps it: the BullMQ job name and data for one job. Throws before
 * anything touches Redis.
 */
export function buildJob<N extends JobName>(
  type: N,
  input: unknown,
  requestedBy?: string,
): { name: string; data: JobEnvelope } {
  const payload = parsePayload(type, input);
  return {
    name: `${type}@${tenantOf(payload)}`,
    data: { v: 1, payload, ...(requestedBy ? { requestedBy } : {}) },
  };
}

export function tenantOf(payload: unknown): string {
  const tenant = (payload as { tenant?: unknown }).tenant;
  return typeof tenant === 'string' ? tenant : 'unknown';
}

/** Stable JSON (sorted keys) so equal payloads digest equally. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}

/** What the audit log stores instead of the payload: it may hold personal data. */
export function payloadDigest(payload: unknown): string {
  return 'sha256:' + createHash('sha256').update(canonicalJson(payload)).digest('hex');
}

/** The BullMQ job id for an idempotency key: hashed, so a key that embeds personal data does not leak. */
export function jobIdForKey(key: string): string {
  return 'k-' + createHash('sha256').update(key).digest('hex').slice(0, 40);
}

/** A copy of `value` with each dotted path replaced by a marker. Used for the board and finished jobs. */
export function redactPaths<T>(value: T, paths: readonly string[]): T {
  if (paths.length === 0 || value === null || typeof value !== 'object') return value;
  const copy = structuredClone(value) as Record<string, unknown>;
  for (const p of paths) {
    const parts = p.split('.');
    let node: unknown = copy;
    for (const part of parts.slice(0, -1)) {
      node = node && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined;
    }
    const last = parts.at(-1)!;
    if (node && typeof node === 'object' && last in node)
      (node as Record<string, unknown>)[last] = '[redacted]';
  }
  return copy as T;
}
