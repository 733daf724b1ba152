/**
 * What a BullMQ job carries: the validated payload plus who asked. Versioned so that workers can read
 * jobs queued by older producers (fields are only ever added, optional).
 */
import { createHash, hash } from 'node:crypto';
import { catalog, type JobName, type Payload } from '../../queues/index.ts';
import { ValidationError, zodIssues } from '../errors.ts';

export interface JobEnvelope<P = unknown> {
  v: 1;
  payload: P;
  requestedBy?: string;
  /**
   * The validated payload's digest for the audit log, computed once by the producer rather than on
   * every attempt in the worker's hot path. Absent in jobs queued by older producers: then computed.
   */
  digest?: string;
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
    data: { v: 1, payload, digest: payloadDigest(payload), ...(requestedBy ? { requestedBy } : {}) },
  };
}

export function tenantOf(payload: unknown): string {
  const tenant = (payload as { tenant?: unknown }).tenant;
  return typeof tenant === 'string' ? tenant : 'unknown';
}

/**
 * Stable JSON (sorted keys) so equal payloads digest equally. The same text as JSON.stringify with a
 * key-sorting replacer, written out because it runs for every job and the replacer form is ~5× slower.
 */
export function canonicalJson(value: unknown): string {
  return stringifySorted(value) ?? 'null';
}

function stringifySorted(value: unknown): string | undefined {
  if (
    value !== null &&
    typeof value === 'object' &&
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
  )
    value = (value as { toJSON(): unknown }).toJSON();
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => stringifySorted(v) ?? 'null').join(',')}]`;
  const record = value as Record<string, unknown>;
  let out = '';
  for (const key of Object.keys(record).sort()) {
    const text = stringifySorted(record[key]);
    if (text !== undefined) out += `${out ? ',' : ''}${JSON.stringify(key)}:${text}`;
  }
  return `{${out}}`;
}

/** What the audit log stores instead of the payload: it may hold personal data. */
export function payloadDigest(payload: unknown): string {
  return 'sha256:' + hash('sha256', canonicalJson(payload));
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
