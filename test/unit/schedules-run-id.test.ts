/** Each run of a job scheduler has a run id of its own, though the scheduler's data is the same for all. */
import { describe, expect, it } from 'vitest';
import {
  buildJob,
  checkEnvelope,
  isLegacyRunId,
  runIdOf,
  scheduledRunId,
  type JobEnvelope,
} from '../../src/jobs/envelope.ts';

const UUID_V5 = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const scheduler = 'dbfleet:nightly_backup:acme';
const runJob = (millis: number) => `repeat:${scheduler}:${millis}`;

describe('scheduled run ids', () => {
  it('are name-based UUIDs (version 5) of the prefix and the job id: one per run, the same for each delivery', () => {
    const id = scheduledRunId('dbfleet', runJob(1_774_749_600_000));
    expect(id).toMatch(UUID_V5);
    expect(isLegacyRunId(id)).toBe(false);
    expect(scheduledRunId('dbfleet', runJob(1_774_749_600_000))).toBe(id);
    const others = [
      scheduledRunId('dbfleet', runJob(1_774_836_000_000)), // the next run
      scheduledRunId('staging', runJob(1_774_749_600_000)), // another deployment
      scheduledRunId('dbfleet', `repeat:dbfleet:nightly_backup:globex:1774749600000`), // another tenant
    ];
    expect(new Set([id, ...others]).size).toBe(4);
  });

  it("runIdOf gives a scheduler's run its derived id, whatever the template's data carries", () => {
    const { data } = buildJob('backup', { tenant: 'acme' });
    const template: JobEnvelope = { ...data };
    delete template.runId;
    const jobId = runJob(1_774_749_600_000);
    expect(runIdOf(template, 'dbfleet', jobId, scheduler)).toBe(scheduledRunId('dbfleet', jobId));
    // A run id in a template would name every run alike: it is not used for a scheduler's run.
    expect(runIdOf(data, 'dbfleet', jobId, scheduler)).toBe(scheduledRunId('dbfleet', jobId));
  });

  it('leaves other jobs as they were: the enqueued run id, or the legacy key for jobs queued before run ids', () => {
    const { data } = buildJob('backup', { tenant: 'acme' });
    expect(runIdOf(data, 'dbfleet', '42')).toBe(data.runId);
    const legacy: JobEnvelope = { v: 1, payload: { tenant: 'acme' } };
    expect(runIdOf(legacy, 'dbfleet', '42')).toBe('dbfleet:42');
    expect(runIdOf(legacy, 'dbfleet', '42', undefined)).toBe('dbfleet:42');
    // A repeatJobKey with a job id not of its runs (a manual "run now" copy) is not a scheduled run.
    expect(runIdOf(data, 'dbfleet', '43', scheduler)).toBe(data.runId);
    expect(runIdOf(legacy, 'dbfleet', `repeat:${scheduler}:soon`, scheduler)).toBe(
      `dbfleet:repeat:${scheduler}:soon`,
    );
  });

  it("the envelope accepts a scheduler's mark and refuses a malformed one", () => {
    const mark = { schedule: 'nightly_backup', definition: 'a'.repeat(64) };
    expect(() => checkEnvelope({ v: 1, payload: {}, scheduled: mark })).not.toThrow();
    for (const bad of [
      { ...mark, extra: 1 },
      { ...mark, definition: 'xyz' },
      { schedule: 'no spaces' },
      'nightly',
    ])
      expect(() => checkEnvelope({ v: 1, payload: {}, scheduled: bad })).toThrow(
        'scheduled: must be { schedule: <identifier>, definition: <64 hex digits> }',
      );
  });
});
