import { describe, expect, it } from 'vitest';
import { policyProblems } from '../../src/cleanup/policies.ts';

const objects = (prefix: string, name = 'o') => ({ name, store: 'objects', prefix, olderThanDays: 1 });

describe('retention policies as declared', () => {
  it('takes a sound set', () => {
    expect(
      policyProblems([
        objects('tmp/{tenant}/'),
        objects('uploads/{tenant}/scratch/', 'u'),
        { name: 'a', store: 'archives', olderThanDays: 90 },
        { name: 'b', store: 'backups', keep: { daily: 7 }, timeZone: 'Europe/Paris' },
      ]),
    ).toEqual([]);
  });

  it.each([
    ['{tenant}/', /not the first/],
    ['tmp/{tenant}', /ending in \//],
    ['tmp/../{tenant}/', /must not hold \. or \.\./],
    ['tmp/{tenant}/../', /must not hold \. or \.\./],
    ['backups/{tenant}/', /must not be under backups/],
    ['archives/x/{tenant}/', /must not be under/],
    ['tmp/{tenantx}/', /one of them exactly \{tenant\}/],
  ])('refuses the objects prefix %j', (prefix, message) => {
    expect(policyProblems([objects(prefix)]).join('\n')).toMatch(message);
  });

  it.each([
    [{ where: { _id: [1, 2] } }, /_id cannot be the time field nor in where/],
    [{ timeField: '_id' }, /_id cannot be the time field nor in where/],
    [{ where: { at: 1 } }, /where: at is the time field already/],
  ])('refuses a collection policy with %j', (extra, message) => {
    const policy = {
      name: 'm',
      store: 'mongo',
      target: 'events',
      timeField: 'at',
      olderThanDays: 7,
      ...extra,
    };
    expect(policyProblems([policy]).join('\n')).toMatch(message);
  });

  it("refuses objects policies where one tenant's folder would hold another policy's tenants", () => {
    expect(policyProblems([objects('a/{tenant}/'), objects('a/x/{tenant}/', 'p')])).toEqual([
      "retention[0].prefix: its folders before {tenant} hold retention[1]'s, which another tenant's objects would be under",
    ]);
  });

  it('names unknown keys, reserved names, duplicates and empty backup rules', () => {
    expect(
      policyProblems([
        {
          name: 'x',
          store: 'postgres',
          target: '_dbfleet_cleanup',
          timeField: 'at',
          olderThanDays: 1,
          extra: 1,
        },
        { name: 'b', store: 'backups', keep: {} },
        { name: 'b', store: 'exports' },
      ]),
    ).toEqual([
      "retention[0].target: is reserved for the fleet's own records",
      'retention[0]: Unrecognized key: "extra"',
      'retention[1].keep: must keep at least one daily, weekly, monthly or yearly backup',
      'retention[2].name: b is used twice',
    ]);
  });
});
