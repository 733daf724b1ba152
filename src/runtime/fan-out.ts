/**
 * Fan-out as a BullMQ flow, from inside a running job: add one child job per item (ids derived from
 * the parent's, so a re-run adds nothing twice), park the parent in waiting-children, and when every
 * child has finished run the parent's handler again from the top; that second call of `fanOut`
 * returns each child's result or failure. A failed child does not fail the parent
 * (`ignoreDependencyOnFailure`): the parent reports it.
 */
import { Queue, WaitingChildrenError, type Job } from 'bullmq';
import type { JobName, PayloadInput, Result } from '../../queues/index.ts';
import { jobOptions } from '../client/client.ts';
import { buildJob, isLegacyRunId, type JobEnvelope } from '../jobs/envelope.ts';
import type { FleetDeps } from './deps.ts';

export interface FanOutOutcome<N extends JobName> {
  completed: { key: string; result: Result<N> }[];
  failed: { key: string; reason: string }[];
}

export type FanOut = <N extends JobName>(
  type: N,
  children: { key: string; payload: PayloadInput<N> }[],
) => Promise<FanOutOutcome<N>>;

/**
 * Child job id: the parent's run id and the child's key, so that a later run under the same job id
 * (a reused idempotency key) does not find the children of an earlier one; a parent queued before
 * run ids uses its job id. BullMQ ids may not contain ':'.
 */
const childId = (parentKey: string, key: string) => `${parentKey}.${key}`;

export function fanOutFor(
  deps: FleetDeps,
  job: Job<JobEnvelope>,
  token: string | undefined,
  runId: string,
): FanOut {
  const parentKey = isLegacyRunId(runId) ? job.id! : runId;
  return async (type, children) => {
    if (!token) throw new Error('fanOut needs the worker token of a running job');
    if (!job.data.fannedOut) {
      const queue = new Queue(type, { connection: deps.redis, prefix: deps.prefix });
      try {
        await queue.addBulk(
          children.map((c) => ({
            ...buildJob(type, c.payload, job.data.requestedBy),
            opts: {
              ...jobOptions(type),
              jobId: childId(parentKey, c.key),
              parent: { id: job.id!, queue: job.queueQualifiedName },
              ignoreDependencyOnFailure: true,
            },
          })),
        );
      } finally {
        await queue.close();
      }
      await job.updateData({ ...job.data, fannedOut: true });
    }
    // True while children are pending: the parent leaves the worker and comes back when they are done.
    if (await job.moveToWaitingChildren(token)) throw new WaitingChildrenError();

    const keyOf = (childKey: string) => {
      const id = childKey.slice(childKey.lastIndexOf(':') + 1);
      return id.slice(parentKey.length + 1);
    };
    const values = await job.getChildrenValues<Result<typeof type>>();
    const failures = await job.getIgnoredChildrenFailures();
    return {
      completed: Object.entries(values).map(([k, result]) => ({ key: keyOf(k), result })),
      failed: Object.entries(failures).map(([k, reason]) => ({ key: keyOf(k), reason })),
    };
  };
}
