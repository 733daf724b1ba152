/**
 * pino JSON logs. Secrets and personal data are redacted by path, so a handler that logs a payload
 * or an error with a connection string does not leak it.
 */
import { pino, type Logger } from 'pino';
import { safeErrorMessage } from './errors.ts';

export type { Logger } from 'pino';

const REDACT = [
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'connectionString',
  '*.connectionString',
  'payload.subject',
  'payload.source.rows',
  '*.email',
];

/**
 * Connection URLs in free text: keep the host, hide the credentials. The user may be empty: Redis
 * URLs often carry only a password (`redis://:secret@host`).
 */
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):([^@/\s]+)@/gi, '$1$2:***@');
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'dbfleet' },
      redact: { paths: REDACT, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          // Error messages from drivers may embed a connection URL with its password.
          const redacted = args.map((a) => (typeof a === 'string' ? redactUrl(a) : a));
          return method.apply(this, redacted as Parameters<typeof method>);
        },
      },
      serializers: {
        // Never the driver's own fields (detail, keyValue, errInfo...): they hold values.
        err: (err: Error) => ({
          type: err.name,
          message: redactUrl(safeErrorMessage(err)),
          code: (err as { code?: unknown }).code,
        }),
      },
    },
    destination,
  );
}
