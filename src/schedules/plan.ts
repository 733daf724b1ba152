/**
 * Reading our job schedulers back from Redis and comparing them with what the config asks for.
 * Nothing here writes: sync.ts applies the plan, list.ts shows it.
 */
import { Queue } from 'bullmq';
import { jobNames, type JobName } from '../../queues/index.ts';
import { canonicalJson, type JobEnvelope } from '../jobs/envelope.ts';
import type { FleetDeps } from '../runtime/deps.ts';
import { parseSchedulerId, type SchedulerDefinition } from './definitions.ts';
import { repeatStrategy } from './strategy.ts';

/** One Queue per job type, with our repeat strategy: an upsert computes the first run with it. */
export function scheduleQueues(deps: FleetDeps): Map<JobName, Queue> {
  return new Map(
    jobNames.map((n) => [
      n,
      new Queue(n, { connection: deps.redis, prefix: deps.prefix, settings: { repeatStrategy } }),
    ]),
  );
}

export async function closeQueues(queues: Map<JobName, Queue>): Promise<void> {
  await Promise.all([...queues.values()].map((q) => q.close()));
}

/** One of our schedulers as Redis holds it. */
export interface ExistingScheduler {
  queue: JobName;
  id: string;
  schedule: string;
  tenant: string;
  name: string;
  pattern: string | undefined;
  tz: string | undefined;
  /** When its next run is due (ms): BullMQ's score for it, which names that run's job. */
  next: number | undefined;
  /** The definition digest its template carries. */
  definition: string | undefined;
  /** Its template's data, the mark (definition digest) left out. */
  data: unknown;
  /**
   * Whether the run it is waiting for exists and has not finished. A worker adds the following run
   * when it takes one; a scheduler whose pending run has finished (or vanished) would never fire
   * again, so a sync upserts it.
   */
  pending: boolean;
}

/** Every scheduler of ours (id prefix), on every queue; anyone else's are left out, and alone. */
export async function readSchedulers(
  deps: FleetDeps,
  queues: Map<JobName, Queue>,
): Promise<ExistingScheduler[]> {
  const found = (
    await Promise.all(
      [...queues].map(async ([queue, q]) =>
        (await q.getJobSchedulers()).flatMap((s) => {
          const ours = parseSchedulerId(s.key);
          if (!ours) return [];
          const data = s.template?.data as JobEnvelope | undefined;
          return [
            {
              queue,
              id: s.key,
              ...ours,
              name: s.name,
              pattern: s.pattern ?? undefined,
              tz: s.tz ?? undefined,
              next: s.next ?? undefined,
              definition: data?.scheduled?.definition,
              data: withoutMark(data),
              pending: false,
              runKey: s.next === undefined ? undefined : q.toKey(`repeat:${s.key}:${s.next}`),
            },
          ];
        }),
      ),
    )
  ).flat();
  const pipeline = deps.redis.pipeline();
  for (const s of found) if (s.runKey) pipeline.hmget(s.runKey, 'timestamp', 'finishedOn');
  const answers = (await pipeline.exec()) ?? [];
  let i = 0;
  return found.map(({ runKey, ...s }) => {
    if (!runKey) return s;
    const [err, fields] = answers[i++] ?? [];
    const [timestamp, finishedOn] = (err ? [null, null] : fields) as [string | null, string | null];
    return { ...s, pending: timestamp !== null && finishedOn === null };
  });
}

function withoutMark(data: JobEnvelope | undefined): unknown {
  if (!data || typeof data !== 'object') return data;
  const { scheduled: _mark, ...rest } = data;
  return rest;
}

export type Action = 'add' | 'change' | 'repair' | 'remove' | 'unchanged';

export interface Planned {
  action: Action;
  queue: JobName;
  id: string;
  schedule: string;
  tenant: string;
  wanted?: SchedulerDefinition;
  existing?: ExistingScheduler;
}

/**
 * Whether a scheduler in Redis is the one wanted: its digest (which covers what Redis does not keep
 * readably, such as the spread and the job options), and what its template and BullMQ's own fields
 * hold, so that a scheduler changed by other means than a sync is not taken for ours.
 */
export function matches(existing: ExistingScheduler, wanted: SchedulerDefinition): boolean {
  return (
    existing.definition === wanted.definition &&
    canonicalJson(existing.data) === canonicalJson(withoutMark(wanted.template.data)) &&
    existing.pattern === wanted.repeat.pattern &&
    existing.tz === wanted.repeat.tz &&
    existing.name === wanted.template.name
  );
}

/**
 * What a sync does to each scheduler: add the missing, change those whose definition differs,
 * repair those stuck without a pending run, remove ours the config no longer asks for, and leave
 * the rest alone (no write at all: a worker restarting in a loop changes nothing).
 */
export function plan(
  wanted: readonly SchedulerDefinition[],
  existing: readonly ExistingScheduler[],
): Planned[] {
  const key = (queue: string, id: string) => `${queue}\n${id}`;
  const present = new Map(existing.map((e) => [key(e.queue, e.id), e]));
  const out: Planned[] = [];
  for (const w of wanted) {
    const e = present.get(key(w.queue, w.id));
    present.delete(key(w.queue, w.id));
    const action: Action = !e ? 'add' : !matches(e, w) ? 'change' : !e.pending ? 'repair' : 'unchanged';
    out.push({
      action,
      queue: w.queue,
      id: w.id,
      schedule: w.schedule,
      tenant: w.tenant,
      wanted: w,
      existing: e,
    });
  }
  for (const e of present.values())
    out.push({
      action: 'remove',
      queue: e.queue,
      id: e.id,
      schedule: e.schedule,
      tenant: e.tenant,
      existing: e,
    });
  return out;
}
