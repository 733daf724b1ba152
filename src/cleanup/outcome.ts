/** What a cleanup job reports of each policy, and what every policy's runner is given. */
import type { Logger } from '../logger.ts';

export interface PolicyOutcome {
  name: string;
  store: 'postgres' | 'mongo' | 'objects' | 'archives' | 'exports' | 'control' | 'backups';
  dryRun: boolean;
  /** Rows, documents, objects or backups the policy found to delete (a dry run: would delete). */
  matched: number;
  deleted: number;
  /** Written to the policy's archive before being deleted. */
  archived: number;
  /** Rows a foreign key still references (ON DELETE NO ACTION / RESTRICT): left in place. */
  skipped?: number;
  batches: number;
  longestBatchMs: number;
  /** The oldest and newest time among what a dry run found (ISO 8601); null when it found nothing. */
  oldest?: string | null;
  newest?: string | null;
  /** What is older than this went (ISO 8601): the run's first start less the policy's days. */
  cutoff?: string;
  /** Backups: how many stay. */
  kept?: number;
}

/** A dry run's oldest and newest among these times (ISO 8601), null when there are none. */
export function timeSpan(times: readonly Date[]): { oldest: string | null; newest: string | null } {
  const sorted = times.map((t) => t.toISOString()).sort();
  return { oldest: sorted[0] ?? null, newest: sorted.at(-1) ?? null };
}

export function emptyOutcome(name: string, store: PolicyOutcome['store'], dryRun: boolean): PolicyOutcome {
  return { name, store, dryRun, matched: 0, deleted: 0, archived: 0, batches: 0, longestBatchMs: 0 };
}

/** What a policy's runner may use: the run, its clock, and the way to stop. */
export interface RunScope {
  tenant: string;
  /** Unique for all time: checkpoints and archives are keyed by it. */
  runId: string;
  dryRun: boolean;
  /** Fixed at the run's first attempt, so a retry deletes the same set. */
  cutoff: Date;
  signal: AbortSignal;
  throwIfInterrupted(): void;
  log: Logger;
  /** Called after each batch with the policy's running totals. */
  progress(outcome: PolicyOutcome): Promise<void>;
}
