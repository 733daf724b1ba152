import { inject } from 'vitest';

// Every test file sees the services' connection settings as a deployment would: in its environment.
Object.assign(process.env, inject('servicesEnv'), {
  DBFLEET_LOG_LEVEL: process.env.DBFLEET_LOG_LEVEL ?? 'silent',
});
