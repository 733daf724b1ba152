/**
 * 12-factor settings, read from the environment once at start and validated together, so a
 * misconfigured process fails with one message naming every missing or invalid variable.
 */
import path from 'node:path';
import { z } from 'zod';
import { templateProblem } from '../storage/tenant-scope.ts';
import { parseMasterKeys } from '../backup/keys.ts';

const url = (protocols: string[]) =>
  z.string().refine((v) => URL.canParse(v) && protocols.includes(new URL(v).protocol), {
    message: `must be a ${protocols.join(' or ')} URL`,
  });

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const list = z.string().transform((v) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);

/** Comma-separated templates, each with `{tenant}` as a whole segment (see tenant-scope.ts). */
const templates = (kind: 'folder' | 's3') =>
  list
    .transform((items) => (kind === 'folder' ? items.map((i) => path.resolve(i)) : items))
    .superRefine((items, ctx) => {
      for (const item of items) {
        const problem = templateProblem(item, kind);
        if (problem) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(item)} ${problem}` });
      }
    });

/** `id:base64key` pairs (src/backup/keys.ts); the error names the entry, never the key. */
const masterKeys = z.string().transform((text, ctx) => {
  try {
    return parseMasterKeys(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

const schema = z.object({
  DBFLEET_REDIS_URL: url(['redis:', 'rediss:']),
  DBFLEET_CONTROL_DATABASE_URL: url(['postgres:', 'postgresql:']),
  /** Where tenants' PostgreSQL schemas live unless the config module overrides a tenant. */
  DBFLEET_TENANT_POSTGRES_URL: url(['postgres:', 'postgresql:']).optional(),
  DBFLEET_TENANT_MONGO_URL: url(['mongodb:', 'mongodb+srv:']),
  DBFLEET_S3_ENDPOINT: url(['http:', 'https:']).optional(),
  DBFLEET_S3_BUCKET: z.string().min(3).default('dbfleet'),
  AWS_REGION: z.string().default('us-east-1'),
  DBFLEET_LOCAL_STORAGE_DIR: z.string().default('.dbfleet/storage'),
  /** Folders a tenant's file sources may be read from, templated: `/srv/fixtures/{tenant}`. */
  DBFLEET_FILE_ROOTS: templates('folder').optional(),
  /** S3 prefixes a tenant's sources may be read from, templated; default s3://<bucket>/tenants/{tenant}/. */
  DBFLEET_S3_SOURCES: templates('s3').optional(),
  DBFLEET_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be [A-Za-z0-9_-], 1-64 characters')
    .default('dbfleet'),
  DBFLEET_CONFIG: z.string().optional(),
  DBFLEET_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  DBFLEET_SHUTDOWN_GRACE_MS: int(100, 600_000).default(25_000),
  /** How long a worker holds a job's lock between renewals; a killed worker's job is taken over after it. */
  DBFLEET_LOCK_DURATION_MS: int(1_000, 600_000).default(30_000),
  /** MongoDB migration lock lease: a killed runner's lock is taken over this long after its last renewal. */
  DBFLEET_MIGRATE_LEASE_MS: int(1_000, 3_600_000).default(30_000),
  /** How long a migration run waits for another runner's lock on the same tenant store before retrying. */
  DBFLEET_MIGRATE_LOCK_WAIT_MS: int(0, 3_600_000).default(120_000),
  /**
   * Backup master keys, `id:base64key` comma-separated, the first the current one (see
   * src/backup/keys.ts). A secret: only ever from the environment, never quoted in an error.
   */
  DBFLEET_BACKUP_KEYS: masterKeys.optional(),
  /**
   * Erasure ledger keys, the same form: they seal the subject ids the ledger keeps (so restores can
   * erase them again), key the subject hashes and anonymised pseudonyms, and authenticate receipts
   * (src/erase/ledger-keys.ts). Without them erase and export-subject fail before changing anything.
   */
  DBFLEET_LEDGER_KEYS: masterKeys.optional(),
  /** S3 multipart part size for backup objects, MiB; grown per object beyond 10,000 parts. */
  DBFLEET_BACKUP_PART_SIZE_MB: int(5, 5_120).default(8),
  /** Tables or collections a backup or restore reads or writes at once. */
  DBFLEET_BACKUP_PARALLEL: int(1, 16).default(2),
  DBFLEET_BOARD_HOST: z.string().default('127.0.0.1'),
  DBFLEET_BOARD_PORT: int(0, 65_535).default(3000),
  DBFLEET_BOARD_USER: z.string().min(1).optional(),
  DBFLEET_BOARD_PASSWORD: z.string().min(12, 'must be at least 12 characters').optional(),
  DBFLEET_BOARD_TOKEN: z.string().min(24, 'must be at least 24 characters').optional(),
});

export type Env = z.infer<typeof schema>;

export class EnvError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid environment:\n  ${problems.join('\n  ')}`);
    this.problems = problems;
    this.name = 'EnvError';
  }
}

export function loadEnv(source: NodeJS.ProcessEnv = process.env): Env {
  const parsed = schema.safeParse(source);
  if (!parsed.success) {
    throw new EnvError(
      parsed.error.issues.map((i) => {
        const name = i.path.join('.');
        return source[name] === undefined ? `${name}: is required` : `${name}: ${i.message}`;
      }),
    );
  }
  const env = parsed.data;
  if (Boolean(env.DBFLEET_BOARD_USER) !== Boolean(env.DBFLEET_BOARD_PASSWORD)) {
    throw new EnvError(['DBFLEET_BOARD_USER and DBFLEET_BOARD_PASSWORD: set both or neither']);
  }
  return env;
}
