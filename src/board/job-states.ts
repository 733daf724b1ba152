/**
 * The states a BullMQ job can be listed in, for the board's gauge and `dbfleet jobs list --state`.
 * Its own module so the CLI gets the list without loading Express and Bull Board.
 */
export const JOB_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'completed',
  'failed',
  'waiting-children',
] as const;

export type JobState = (typeof JOB_STATES)[number];
