/** The config module's schedules, as defineConfig checks them. */
import { describe, expect, it } from 'vitest';
import { defineConfig, type ScheduleConfig } from '../../src/config/define.ts';
import { spreadWindowMs } from '../../src/schedules/config.ts';

const nightly: ScheduleConfig = {
  name: 'nightly_backup',
  job: 'backup',
  cron: '0 3 * * *',
  timeZone: 'Europe/Paris',
  tenants: 'all',
  payload: { destination: 'local' },
  spreadMinutes: 30,
};

/** The problems defineConfig reports for these schedules (one per line), or [] when it accepts them. */
function problems(...schedules: unknown[]): string[] {
  try {
    defineConfig({ schedules: schedules as ScheduleConfig[] });
    return [];
  } catch (err) {
    const [head, ...lines] = (err as Error).message.split('\n');
    expect(head).toBe('invalid dbfleet config:');
    return lines.map((l) => l.trim());
  }
}

describe('schedules in the config module', () => {
  it('accepts the examples: all tenants or a list, a payload without its tenant, an optional spread', () => {
    expect(
      problems(nightly, {
        name: 'hourly_cleanup',
        job: 'cleanup',
        cron: '0 * * * *',
        timeZone: 'UTC',
        tenants: ['acme', 'globex'],
        payload: {},
      }),
    ).toEqual([]);
    expect(problems({ ...nightly, payload: undefined, spreadMinutes: undefined })).toEqual([]);
    expect(problems({ ...nightly, cron: '*/5 * * * * *', spreadMinutes: 0.05 })).toEqual([]);
  });

  it('refuses unknown keys, names that are not identifiers or used twice, and bad tenant lists', () => {
    expect(problems({ ...nightly, every: 'day' })).toEqual(['schedules[0]: Unrecognized key: "every"']);
    expect(problems({ ...nightly, name: 'nightly backup' })).toEqual([
      'schedules[0].name: must be an identifier (letter or _ first, then [A-Za-z0-9_])',
    ]);
    expect(problems(nightly, { ...nightly, cron: '0 4 * * *' })).toEqual([
      'schedules[1].name: nightly_backup is used twice',
    ]);
    expect(problems({ ...nightly, tenants: ['acme', 'Acme!'] })).toEqual([
      'schedules[0].tenants.1: must be a tenant id',
    ]);
    expect(problems({ ...nightly, tenants: ['acme', 'acme'] })).toEqual([
      'schedules[0].tenants: names a tenant twice',
    ]);
    expect(problems({ ...nightly, tenants: [] })).toEqual([
      'schedules[0].tenants: Too small: expected array to have >=1 items',
    ]);
    expect(problems({ ...nightly, tenants: 'everyone' })).toHaveLength(1);
  });

  it('refuses job types it does not know or cannot schedule, saying why', () => {
    expect(problems({ ...nightly, job: 'vacuum' })).toEqual([
      'schedules[0].job: must be one of backup, cleanup, validate, migrate, load-fixtures',
    ]);
    expect(problems({ ...nightly, job: 'erase', payload: {} })).toEqual([
      'schedules[0].job: erase cannot be scheduled (its payload names a data subject, who must not stay in Redis); schedulable: backup, cleanup, validate, migrate, load-fixtures',
    ]);
    expect(problems({ ...nightly, job: 'restore', payload: {} })[0]).toMatch(
      /^schedules\[0\]\.job: restore cannot be scheduled \(it restores one named backup\)/,
    );
  });

  it('refuses patterns that do not parse, with the wrong number of fields, and zones that are not IANA names', () => {
    expect(problems({ ...nightly, cron: '61 3 * * *' })).toEqual([
      'schedules[0].cron: does not parse: Constraint error, got value 61 expected range 0-59',
    ]);
    expect(problems({ ...nightly, cron: '0 3 * *' })).toEqual([
      'schedules[0].cron: must have five fields (minute hour day month weekday), or six with seconds first',
    ]);
    expect(problems({ ...nightly, cron: '0 0 31 2 *' })[0]).toMatch(/^schedules\[0\]\.cron: does not parse/);
    for (const zone of ['Europe/Pariss', '+01:00', 'CET+1', ''])
      expect(problems({ ...nightly, timeZone: zone }), zone).toEqual([
        expect.stringMatching(/^schedules\[0\]\.timeZone: /),
      ]);
    expect(problems({ ...nightly, timeZone: 'America/Argentina/Buenos_Aires' })).toEqual([]);
  });

  it("checks the payload, tenant filled in, against the job's own schema; never quoting a value", () => {
    const secretish = 'alice@example.com';
    const found = problems({ ...nightly, payload: { destination: secretish, compresion: 'zstd' } });
    expect(found).toEqual([
      'schedules[0].payload.destination: Invalid option: expected one of "s3"|"local"',
      'schedules[0].payload: Unrecognized key: "compresion"',
    ]);
    expect(found.join('\n')).not.toContain(secretish);
    expect(problems({ ...nightly, payload: { tenant: 'acme' } })).toEqual([
      'schedules[0].payload.tenant: is filled in per tenant from tenants; leave it out',
    ]);
    // Refinements across fields too: migrate down needs a target version.
    expect(
      problems({ ...nightly, job: 'migrate', payload: { direction: 'down' }, tenants: ['acme'] }),
    ).toEqual(['schedules[0].payload.to: is required going down and for baseline']);
  });

  it('refuses payload fields that may hold personal data: a scheduler keeps its payload in Redis', () => {
    const load = {
      ...nightly,
      name: 'reload',
      job: 'load-fixtures',
      payload: {
        target: { store: 'mongo', name: 'users' },
        source: { type: 'inline', rows: [{ email: 'x' }] },
      },
    };
    expect(problems(load)).toEqual([
      'schedules[0].payload: source.rows may hold personal data, which a schedule would keep in Redis: not allowed',
    ]);
    const fromS3 = {
      ...load,
      payload: { ...load.payload, source: { type: 's3', url: 's3://dbfleet/x.ndjson' } },
    };
    expect(problems(fromS3)).toEqual([]);
  });

  it('a spread must be shorter than the interval between runs; the default is 10 minutes or half of it', () => {
    expect(problems({ ...nightly, cron: '*/15 * * * *', spreadMinutes: 15 })).toEqual([
      'schedules[0].spreadMinutes: must be shorter than the shortest interval between runs (15 minutes)',
    ]);
    expect(problems({ ...nightly, spreadMinutes: -1 })).toEqual([
      'schedules[0].spreadMinutes: Too small: expected number to be >=0',
    ]);
    expect(spreadWindowMs({ cron: '0 3 * * *' })).toBe(10 * 60_000);
    expect(spreadWindowMs({ cron: '*/4 * * * *' })).toBe(2 * 60_000);
    expect(spreadWindowMs({ cron: '* * * * * *' })).toBe(500);
    expect(spreadWindowMs({ cron: '0 3 * * *', spreadMinutes: 0 })).toBe(0);
  });
});
