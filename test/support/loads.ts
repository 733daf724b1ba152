/** Small builders shared by the tests that load demo files. */
import type { PayloadInput } from '../../queues/index.ts';
import { quoteIdent } from '../../src/stores/identifiers.ts';
import type { TenantHandle } from './fixtures.ts';

/** A load-fixtures payload for a file, into a demo table or collection of the same name. */
export function fileLoad(
  tenant: string,
  store: 'postgres' | 'mongo',
  name: string,
  path: string,
  extra: Partial<PayloadInput<'load-fixtures'>> = {},
): PayloadInput<'load-fixtures'> {
  return { tenant, target: { store, name }, schema: name, source: { type: 'file', path }, ...extra };
}

export async function countRows(tenant: TenantHandle, table: string): Promise<number> {
  return tenant.pg.withClient(async (c) =>
    Number((await c.query(`SELECT count(*) FROM ${quoteIdent(table)}`)).rows[0].count),
  );
}
