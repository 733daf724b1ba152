/**
 * The fleet's error vocabulary and the one place that decides whether a failure is retried.
 *
 * Handlers throw whatever their drivers throw; `classifyError` maps driver errors (pg SQLSTATE codes,
 * Node socket errors, MongoDB error labels, S3 status codes, zod issues) to permanent or transient,
 * once, here. Permanent faults fail the job at once; transient ones are retried with backoff.
 */
import { ZodError } from 'zod';

export type ErrorKind = 'permanent' | 'transient';

abstract class FleetError extends Error {
  abstract readonly kind: ErrorKind;
  /** A short, bounded code for metrics labels and the audit log (`invalid_payload`, `deadlock`...). */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad input, a missing table, a violated constraint: retrying cannot help. */
export class PermanentError extends FleetError {
  readonly kind = 'permanent';
}

/** Network trouble, timeouts, deadlocks, throttling: the same attempt may succeed later. */
export class TransientError extends FleetError {
  readonly kind = 'transient';
}

/** A payload that does not match its contract. Names every offending field. */
export class ValidationError extends PermanentError {
  readonly issues: readonly string[];
  constructor(subject: string, issues: readonly string[]) {
    super('invalid_payload', `${subject} is invalid: ${issues.join('; ')}`);
    this.issues = issues;
  }
}

/** Thrown by a handler that saw its abort signal (shutdown or timeout) and stopped at a checkpoint. */
export class InterruptedError extends TransientError {
  constructor(reason: string) {
    super('interrupted', `interrupted: ${reason}`);
  }
}

export function zodIssues(error: ZodError): string[] {
  return error.issues.map((issue) => {
    const path = issue.path.length ? issue.path.map(String).join('.') : '(root)';
    return `${path}: ${issue.message}`;
  });
}

export interface Classified {
  kind: ErrorKind;
  code: string;
  message: string;
}

// PostgreSQL SQLSTATE classes and codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
const PG_TRANSIENT_CODES: Record<string, string> = {
  '40001': 'serialization_failure',
  '40P01': 'deadlock',
  '55P03': 'lock_not_available',
  '57014': 'query_canceled',
  '57P01': 'admin_shutdown',
  '57P02': 'crash_shutdown',
  '57P03': 'cannot_connect_now',
  '53300': 'too_many_connections',
};
const PG_PERMANENT_CODES: Record<string, string> = {
  '42P01': 'undefined_table',
  '42703': 'undefined_column',
  '3F000': 'undefined_schema',
  '42501': 'insufficient_privilege',
  '23505': 'unique_violation',
  '23503': 'foreign_key_violation',
  '23502': 'not_null_violation',
  '23514': 'check_violation',
};

const NODE_TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
]);

const S3_TRANSIENT = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'InternalError',
]);
const S3_PERMANENT = new Set(['NoSuchKey', 'NoSuchBucket', 'AccessDenied', 'InvalidAccessKeyId', 'NotFound']);

interface DriverErrorShape {
  code?: unknown;
  name?: unknown;
  message?: unknown;
  errorLabels?: unknown;
  hasErrorLabel?: (label: string) => boolean;
  $metadata?: { httpStatusCode?: number };
  severity?: unknown;
}

/** Decides permanent vs transient for any thrown value. Unknown errors are transient: attempts are bounded. */
export function classifyError(error: unknown): Classified {
  if (error instanceof FleetError) return { kind: error.kind, code: error.code, message: error.message };
  if (error instanceof ZodError) {
    return { kind: 'permanent', code: 'invalid_payload', message: zodIssues(error).join('; ') };
  }
  const e = (typeof error === 'object' && error !== null ? error : {}) as DriverErrorShape;
  const message = typeof e.message === 'string' ? e.message : String(error);
  const code = typeof e.code === 'string' ? e.code : typeof e.code === 'number' ? String(e.code) : '';
  const name = typeof e.name === 'string' ? e.name : '';

  if (NODE_TRANSIENT_CODES.has(code)) return { kind: 'transient', code: 'connection', message };

  // pg's DatabaseError: a five-character SQLSTATE code plus a severity.
  if (typeof e.severity === 'string' && /^[0-9A-Z]{5}$/.test(code)) return classifyPg(code, message);

  // MongoDB: network and selection errors, and the driver's own retryability labels.
  if (name.startsWith('Mongo')) {
    if (/Network|ServerSelection|Timeout|PoolCleared|NotPrimary/.test(name)) {
      return { kind: 'transient', code: 'connection', message };
    }
    const labels = Array.isArray(e.errorLabels) ? (e.errorLabels as string[]) : [];
    if (labels.includes('RetryableWriteError') || labels.includes('TransientTransactionError')) {
      return { kind: 'transient', code: 'mongo_retryable', message };
    }
    if (code === '11000') return { kind: 'permanent', code: 'unique_violation', message };
    if (code === '26') return { kind: 'permanent', code: 'namespace_not_found', message };
    return { kind: 'transient', code: 'mongo_error', message };
  }

  // S3 (AWS SDK v3): named errors and HTTP status.
  const status = e.$metadata?.httpStatusCode;
  if (S3_TRANSIENT.has(name) || status === 429 || (status !== undefined && status >= 500)) {
    return { kind: 'transient', code: 's3_throttled', message };
  }
  if (S3_PERMANENT.has(name) || status === 403 || status === 404) {
    return { kind: 'permanent', code: 's3_' + (name || String(status)).toLowerCase(), message };
  }

  if (
    /Connection terminated|timeout|socket hang up|Client has encountered a connection error/i.test(message)
  ) {
    return { kind: 'transient', code: 'connection', message };
  }
  return { kind: 'transient', code: 'unknown', message };
}

function classifyPg(code: string, message: string): Classified {
  const transient = PG_TRANSIENT_CODES[code];
  if (transient) return { kind: 'transient', code: transient, message };
  const permanent = PG_PERMANENT_CODES[code];
  if (permanent) return { kind: 'permanent', code: permanent, message };
  const cls = code.slice(0, 2);
  // 08: connection exception; 53: insufficient resources; 58: system error (e.g. I/O).
  if (cls === '08' || cls === '53' || cls === '58') return { kind: 'transient', code: `pg_${code}`, message };
  // 22 data exception, 23 integrity, 42 syntax or access rule, 3F schema, 0A not supported.
  if (['22', '23', '42', '3F', '0A', '2B', '44'].includes(cls)) {
    return { kind: 'permanent', code: `pg_${code}`, message };
  }
  return { kind: 'transient', code: `pg_${code}`, message };
}
