/** dbfleet's public API for app backends: the typed producer client, the contracts and the errors. */
export {
  createClient,
  type ClientOptions,
  type EnqueueOptions,
  type EnqueuedJob,
  type FleetClient,
} from './client/client.ts';
export {
  catalog,
  jobNames,
  type JobName,
  type Payload,
  type PayloadInput,
  type Result,
} from '../queues/index.ts';
export { ValidationError, PermanentError, TransientError } from './errors.ts';
export { defineConfig, type DbfleetConfig } from './config/define.ts';
