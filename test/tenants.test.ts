/** The tenant gate workers pass every job through, on the real control database, with a test clock. */
import { expect } from 'vitest';
import { KNOWN_TENANT_TTL_MS, TenantDirectory } from '../src/tenants.ts';
import { test, uniqueId } from './support/fixtures.ts';

test('a worker trusts a tenant it saw for KNOWN_TENANT_TTL_MS, then asks again and refuses a removed one', async ({
  deps,
}) => {
  let now = 1_000_000;
  const directory = new TenantDirectory(deps.env, deps.config, deps.control, process.env, () => now);
  const id = uniqueId('ttl');
  await deps.control.addTenant(id);
  try {
    await directory.assertKnown(id);
    expect(directory.isKnown(id)).toBe(true);

    await deps.control.forgetTenant(id); // what `dbfleet tenants remove` does
    now += KNOWN_TENANT_TTL_MS - 1;
    expect(directory.isKnown(id)).toBe(true);
    await expect(directory.assertKnown(id)).resolves.toBeUndefined();

    now += 1;
    expect(directory.isKnown(id)).toBe(false);
    await expect(directory.assertKnown(id)).rejects.toMatchObject({
      code: 'unknown_tenant',
      message: `tenant ${id} does not exist (add it with: dbfleet tenants add ${id})`,
    });
    expect(directory.isKnown(id)).toBe(false);

    // Added again: known again, for another period.
    await deps.control.addTenant(id);
    await directory.assertKnown(id);
    expect(directory.isKnown(id)).toBe(true);
  } finally {
    await deps.control.forgetTenant(id);
  }
});
