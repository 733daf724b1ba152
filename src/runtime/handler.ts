import type { JobName, Payload, Result } from '../../queues/index.ts';
import type { JobContext } from './context.ts';

/** A job handler: `(payload, ctx) => result`. One per job type, in workers/, with the same name. */
export type Handler<N extends JobName> = (payload: Payload<N>, ctx: JobContext) => Promise<Result<N>>;

// The runtime dispatches over the catalog, where the payload type is only known as "one of them".
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- erased at this one dispatch point
export type AnyHandler = (payload: any, ctx: JobContext) => Promise<unknown>;
