/**
 * What a BullMQ job carries: the validated payload plus who asked. Versioned so that workers can read
 * jobs queued by older producers (fields are only ever added, optional).
 */
import { createHash, hash, randomUUID } from 'node:crypto';
import { catalog, type JobName, type Payload } from '../../queues/index.ts';
import { ValidationError, zodIssues } from '../errors.ts';

export interface JobEnvelope<P = unknown> {
  v: 1;
  payload: P;
  /**
   * This run's identity, unique for all time (a UUID minted at enqueue): checkpoints, derived MongoDB
   * ids and load rejections are keyed by it, never by the BullMQ job id, which repeats (ids restart
   * when Redis loses its data; an idempotency key names a new job once the old one is removed).
   * Absent in jobs queued by older producers: see runIdOf.
   */
  runId?: string;
  requestedBy?: string;
  /**
   * The validated payload's digest for the audit log, computed once by the producer rather than on
   * every attempt in the worker's hot path. Absent in jobs queued by older producers: then computed.
   */
  digest?: string;
  /**
   * Set once the job has finished and its sensitive paths were overwritten (redactWhenFinished): it
   * cannot run again.
   */
  redacted?: true;
  /** Set once a job has added its child jobs (fan-out), so that its second run does not add them again. */
  fannedOut?: boolean;
  /**
   * In a job scheduler's template (src/schedules/), so in each of its runs: the schedule that made
   * the run, and a digest of the scheduler's definition (what a sync compares to decide whether the
   * scheduler needs upserting). A template carries no runId: every run gets its own (runIdOf).
   */
  scheduled?: { schedule: string; definition: string };
}

/** Nesting deeper than this is refused before anything walks the payload recursively. */
export const MAX_PAYLOAD_DEPTH = 64;
/** A payload's canonical JSON may be at most this long (inline fixture rows are for small sets). */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Validates a payload against its contract; throws a ValidationError naming every bad field, and
 * every field the contract does not know (a misspelt `dryrun` must not run for real).
 */
export function parsePayload<N extends JobName>(name: N, input: unknown): Payload<N> {
  const depth = depthBeyond(input, MAX_PAYLOAD_DEPTH);
  if (depth)
    throw new ValidationError(`${name} payload`, [
      `${depth}: nested deeper than ${MAX_PAYLOAD_DEPTH} levels`,
    ]);
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
  const json = canonicalJson(payload);
  const bytes = json.length > MAX_PAYLOAD_BYTES / 3 ? Buffer.byteLength(json) : json.length;
  if (bytes > MAX_PAYLOAD_BYTES)
    throw new ValidationError(`${type} payload`, [
      `(root): ${bytes} bytes of JSON, more than the ${MAX_PAYLOAD_BYTES} allowed (load large sets from a file or S3)`,
    ]);
  return {
    name: `${type}@${tenantOf(payload)}`,
    data: {
      v: 1,
      payload,
      runId: randomUUID(),
      digest:
        catalog[type].sensitive.length > 0 ? payloadDigest(type, payload) : 'sha256:' + hash('sha256', json),
      ...(requestedBy ? { requestedBy } : {}),
    },
  };
}

/**
 * The run identity of a job: the one minted at enqueue; for a run of a job scheduler, one derived
 * from its job id (see scheduledRunId); for a job queued by an older producer the key its
 * checkpoints were written under then (`prefix:jobId`), so that it still resumes.
 *
 * `schedulerId` is BullMQ's `job.repeatJobKey`, set on every job a scheduler makes.
 */
export function runIdOf(
  data: JobEnvelope | undefined,
  prefix: string,
  jobId: string,
  schedulerId?: string,
): string {
  // Before the envelope's own: a template's data is the same for every run, so a run id in it
  // would name every run alike.
  if (schedulerId !== undefined && isScheduledRunId(jobId, schedulerId)) return scheduledRunId(prefix, jobId);
  const runId = data?.runId;
  if (runId === undefined) return legacyRunId(prefix, jobId);
  if (typeof runId !== 'string' || !RUN_ID.test(runId))
    throw new ValidationError('job envelope', ['runId: must be a UUID']);
  return runId;
}

/** BullMQ names a scheduler's run `repeat:<scheduler id>:<its scheduled time in ms>`. */
function isScheduledRunId(jobId: string, schedulerId: string): boolean {
  const head = `repeat:${schedulerId}:`;
  return jobId.startsWith(head) && /^\d{1,16}$/.test(jobId.slice(head.length));
}

/** A fixed namespace, so that scheduled run ids are dbfleet's own (RFC 9562 name-based UUIDs). */
const SCHEDULED_RUN_NAMESPACE = Buffer.from('1d8c0f3e6a2b4f5c9e7d2a4b6c8e0f13', 'hex');

/**
 * A scheduled run's id: a version-5 (SHA-1, name-based) UUID of the prefix and the job id, which
 * BullMQ makes from the scheduler and the run's scheduled time. The same for every delivery and
 * retry of that run, so it resumes from its checkpoint; different for every other run: the next
 * run has a later time, and another deployment (prefix) or scheduler another name. Unlike a plain
 * job id it does not start over if Redis loses its data, since the time goes on.
 */
export function scheduledRunId(prefix: string, jobId: string): string {
  const h = createHash('sha1').update(SCHEDULED_RUN_NAMESPACE).update(`${prefix}\n${jobId}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

function legacyRunId(prefix: string, jobId: string): string {
  return `${prefix}:${jobId}`;
}

export function isLegacyRunId(runId: string): boolean {
  return !RUN_ID.test(runId);
}

/**
 * The dotted path of the first value nested deeper than `limit`, or undefined. Iterative, so that a
 * hostile payload meets a ValidationError here rather than a RangeError in a recursive walk later.
 */
export function depthBeyond(value: unknown, limit: number): string | undefined {
  const stack: { value: unknown; depth: number; path: string }[] = [{ value, depth: 0, path: '' }];
  while (stack.length > 0) {
    const top = stack.pop()!;
    if (top.value === null || typeof top.value !== 'object') continue;
    if (top.depth >= limit) return top.path || '(root)';
    for (const [key, child] of Object.entries(top.value))
      stack.push({ value: child, depth: top.depth + 1, path: top.path ? `${top.path}.${key}` : key });
  }
  return undefined;
}

export function tenantOf(payload: unknown): string {
  const tenant =
    payload !== null && typeof payload === 'object' ? (payload as { tenant?: unknown }).tenant : undefined;
  return typeof tenant === 'string' ? tenant : 'unknown';
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const ENVELOPE_KEYS = new Set([
  'v',
  'payload',
  'runId',
  'requestedBy',
  'digest',
  'fannedOut',
  'redacted',
  'scheduled',
]);

function isScheduleMark(value: unknown): boolean {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const { schedule, definition, ...rest } = value as Record<string, unknown>;
  return (
    Object.keys(rest).length === 0 &&
    typeof schedule === 'string' &&
    /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schedule) &&
    typeof definition === 'string' &&
    /^[0-9a-f]{64}$/.test(definition)
  );
}

/** Each envelope field's rule and what to say when it is broken (the run id: runIdOf). */
const ENVELOPE_RULES: readonly [(e: Record<string, unknown>) => boolean, string][] = [
  [(e) => e.v === 1, 'v: must be 1'],
  [(e) => 'payload' in e, 'payload: is required'],
  [
    (e) => e.requestedBy === undefined || (typeof e.requestedBy === 'string' && e.requestedBy.length <= 200),
    'requestedBy: must be text of at most 200 characters',
  ],
  [
    (e) => e.digest === undefined || (typeof e.digest === 'string' && DIGEST.test(e.digest)),
    'digest: must be sha256:<64 hex digits>',
  ],
  [(e) => e.fannedOut === undefined || typeof e.fannedOut === 'boolean', 'fannedOut: must be a boolean'],
  [(e) => e.redacted === undefined || e.redacted === true, 'redacted: must be true'],
  [
    (e) => e.scheduled === undefined || isScheduleMark(e.scheduled),
    'scheduled: must be { schedule: <identifier>, definition: <64 hex digits> }',
  ],
];

/**
 * Checks what a job carries besides its payload, as the worker receives it: written by our producer,
 * or by anything else that can reach Redis. Throws a ValidationError naming each bad field. (The run
 * id is checked by runIdOf, the payload by parsePayload.)
 */
export function checkEnvelope(data: unknown): asserts data is JobEnvelope {
  if (data === null || typeof data !== 'object')
    throw new ValidationError('job envelope', ['(root): not an object']);
  const e = data as Record<string, unknown>;
  const unknown = Object.keys(e).filter((k) => !ENVELOPE_KEYS.has(k));
  const broken = ENVELOPE_RULES.filter(([holds]) => !holds(e));
  if (unknown.length === 0 && broken.length === 0) return;
  throw new ValidationError('job envelope', [
    ...unknown.map((k) => `(root): Unrecognized key: ${JSON.stringify(k)}`),
    ...broken.map(([, issue]) => issue),
  ]);
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

/**
 * What the audit log stores instead of the payload: it may hold personal data. Of the payload with
 * its sensitive paths redacted: a digest of an erasure's subject id could be confirmed by hashing
 * guessed ids.
 */
export function payloadDigest(type: JobName, payload: unknown): string {
  return 'sha256:' + hash('sha256', canonicalJson(redactPaths(payload, catalog[type].sensitive)));
}

/** The BullMQ job id for an idempotency key: hashed, so a key that embeds personal data does not leak. */
export function jobIdForKey(key: string): string {
  return 'k-' + createHash('sha256').update(key).digest('hex').slice(0, 40);
}

/** Whether any of the dotted paths leads to a value in `value` (cheap: no copy). */
export function hasAnyPath(value: unknown, paths: readonly string[]): boolean {
  return paths.some((p) => {
    let node: unknown = value;
    for (const part of p.split('.')) {
      if (node === null || typeof node !== 'object' || !(part in node)) return false;
      node = (node as Record<string, unknown>)[part];
    }
    return true;
  });
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
