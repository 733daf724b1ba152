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

/** File-system faults that retrying cannot mend (a source that is missing, a folder, unreadable). */
const FS_PERMANENT_CODES: Record<string, string> = {
  ENOENT: 'file_not_found',
  EISDIR: 'not_a_file',
  ENOTDIR: 'file_not_found',
  EACCES: 'file_not_readable',
  EPERM: 'file_not_readable',
};

/** Only file operations: ENOENT from connecting to a Unix socket is a server that is down. */
const FS_SYSCALLS = new Set(['open', 'read', 'stat', 'lstat', 'realpath', 'scandir', 'opendir', 'access']);

interface DriverErrorShape {
  code?: unknown;
  codeName?: unknown;
  constraint?: unknown;
  column?: unknown;
  table?: unknown;
  name?: unknown;
  message?: unknown;
  errorLabels?: unknown;
  hasErrorLabel?: (label: string) => boolean;
  $metadata?: { httpStatusCode?: number };
  severity?: unknown;
}

/**
 * Decides permanent vs transient for any thrown value. Unknown errors are transient: attempts are
 * bounded. The message is safe to keep in failure reasons, audit rows and logs: where a driver's own
 * message may quote the data (PostgreSQL data and constraint errors, MongoDB server errors), it is
 * rebuilt from the error's code and the names of the objects involved, never the values.
 */
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
  const fsCode = FS_PERMANENT_CODES[code];
  if (fsCode && FS_SYSCALLS.has(String((e as { syscall?: unknown }).syscall)))
    return { kind: 'permanent', code: fsCode, message };

  // pg's DatabaseError: a five-character SQLSTATE code plus a severity.
  if (typeof e.severity === 'string' && /^[0-9A-Z]{5}$/.test(code)) return classifyPg(code, message, e);

  // MongoDB: network and selection errors, and the driver's own retryability labels.
  if (name.startsWith('Mongo')) {
    if (/Network|ServerSelection|Timeout|PoolCleared|NotPrimary/.test(name)) {
      return { kind: 'transient', code: 'connection', message };
    }
    const safe = mongoMessage(code, e.codeName, message);
    const labels = Array.isArray(e.errorLabels) ? (e.errorLabels as string[]) : [];
    if (labels.includes('RetryableWriteError') || labels.includes('TransientTransactionError')) {
      return { kind: 'transient', code: 'mongo_retryable', message: safe };
    }
    if (code === '11000') return { kind: 'permanent', code: 'unique_violation', message: safe };
    if (code === '26') return { kind: 'permanent', code: 'namespace_not_found', message: safe };
    return { kind: 'transient', code: 'mongo_error', message: safe };
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

function classifyPg(code: string, rawMessage: string, e: DriverErrorShape): Classified {
  const cls = code.slice(0, 2);
  // Data exceptions and constraint violations quote the offending value, in the message or its detail;
  // an exception raised by a function (class P0) says whatever its author put in, values included.
  const message =
    cls === '22' || cls === '23'
      ? pgDataErrorMessage(code, e)
      : cls === 'P0'
        ? `PostgreSQL: a function raised an exception (SQLSTATE ${code})`
        : rawMessage;
  const transient = PG_TRANSIENT_CODES[code];
  if (transient) return { kind: 'transient', code: transient, message };
  const permanent = PG_PERMANENT_CODES[code];
  if (permanent) return { kind: 'permanent', code: permanent, message };
  // 08: connection exception; 53: insufficient resources; 58: system error (e.g. I/O).
  if (cls === '08' || cls === '53' || cls === '58') return { kind: 'transient', code: `pg_${code}`, message };
  // 22 data exception, 23 integrity, 42 syntax or access rule, 3F schema, 0A not supported.
  if (['22', '23', '42', '3F', '0A', '2B', '44'].includes(cls)) {
    return { kind: 'permanent', code: `pg_${code}`, message };
  }
  return { kind: 'transient', code: `pg_${code}`, message };
}

/** What PostgreSQL refused, by SQLSTATE and the names of the objects involved; never the value. */
function pgDataErrorMessage(code: string, e: DriverErrorShape): string {
  const what =
    PG_DATA_ERRORS[code] ?? (code.startsWith('23') ? 'integrity constraint violated' : 'invalid data');
  const names = [
    typeof e.table === 'string' ? `table ${e.table}` : '',
    typeof e.column === 'string' ? `column ${e.column}` : '',
    typeof e.constraint === 'string' ? `constraint ${e.constraint}` : '',
  ].filter(Boolean);
  return `PostgreSQL refused the data: ${what} (SQLSTATE ${code}${names.length ? `; ${names.join(', ')}` : ''})`;
}

/** Short names for the SQLSTATEs data can cause (classes 22 and 23). */
const PG_DATA_ERRORS: Record<string, string> = {
  '22000': 'invalid data',
  '22001': 'text too long for the column',
  '22003': "number out of range for the column's type",
  '22004': 'null not allowed',
  '22007': 'invalid date/time format',
  '22008': 'date/time value out of range',
  '22009': 'invalid time zone',
  '22012': 'division by zero',
  '22015': 'interval out of range',
  '22018': 'invalid text for a cast',
  '22021': 'invalid character for the encoding',
  '22023': 'invalid value',
  '22025': 'invalid escape sequence',
  '22026': 'text length does not match the column',
  '2202E': 'array subscript error',
  '22030': 'duplicate key in a JSON object',
  '22032': 'invalid JSON text',
  '22P02': "invalid text for the column's type",
  '22P03': 'invalid binary representation',
  '22P04': 'malformed COPY line',
  '22P05': 'character not representable in the database encoding',
  '23000': 'integrity constraint violated',
  '23001': 'restricted by a foreign key',
  '23502': 'null in a required column',
  '23503': 'foreign key not found',
  '23505': 'duplicate key',
  '23514': 'check constraint failed',
  '23P01': 'conflicts with an exclusion constraint',
};

/** The short name of a class 22 or 23 SQLSTATE. */
export function pgDataErrorName(code: string): string {
  return PG_DATA_ERRORS[code] ?? (code.startsWith('22') ? 'invalid data' : 'constraint violated');
}

/**
 * Whether `err` is PostgreSQL refusing the data it was given: a data exception (SQLSTATE class 22)
 * or an integrity violation (class 23).
 */
export function isPgDataRefusal(err: unknown): boolean {
  const e = (typeof err === 'object' && err !== null ? err : {}) as { code?: unknown; severity?: unknown };
  return typeof e.severity === 'string' && typeof e.code === 'string' && /^2[23][0-9A-Z]{3}$/.test(e.code);
}

/**
 * A MongoDB server error by its code and code name. Its message quotes values (`dup key: { email:
 * ... }`); of a duplicate key, only the index name is kept.
 */
function mongoMessage(code: string, codeName: unknown, message: string): string {
  if (!code) return 'MongoDB error';
  const index = code === '11000' ? /index: ([A-Za-z0-9_.$-]+)/.exec(message)?.[1] : undefined;
  const label = typeof codeName === 'string' && codeName ? `${codeName}, ` : '';
  return code === '11000'
    ? `MongoDB refused a duplicate key${index ? ` (index ${index})` : ''}`
    : `MongoDB refused the operation (${label}code ${code})`;
}

/** The message of any thrown value, made safe for logs (see classifyError). */
export function safeErrorMessage(error: unknown): string {
  return classifyError(error).message;
}
