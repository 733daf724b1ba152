import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

// Every test file sees the services' connection settings as a deployment would: in its environment.
Object.assign(process.env, inject('servicesEnv'), {
  DBFLEET_LOG_LEVEL: process.env.DBFLEET_LOG_LEVEL ?? 'silent',
});

// Backups are sealed: every test process (and the workers it spawns) gets a master key of its own.
process.env.DBFLEET_BACKUP_KEYS ??= `test-1:${randomBytes(32).toString('base64')}`;
process.env.DBFLEET_LEDGER_KEYS ??= `ledger-1:${randomBytes(32).toString('base64')}`;
