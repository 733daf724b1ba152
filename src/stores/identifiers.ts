/**
 * Every identifier that reaches SQL or a Mongo namespace passes through here: validated against a
 * strict pattern (so no name can smuggle SQL or reach another tenant) and then quoted.
 */
import { IDENTIFIER, TENANT_ID } from '../../queues/fields.ts';
import { PermanentError } from '../errors.ts';

export function assertIdentifier(name: string, what = 'identifier'): string {
  if (!IDENTIFIER.test(name))
    throw new PermanentError(
      'invalid_identifier',
      `${what} ${JSON.stringify(name)} is not a valid identifier`,
    );
  return name;
}

/** `users` -> `"users"`; refuses anything that is not a plain identifier. */
export function quoteIdent(name: string): string {
  return `"${assertIdentifier(name)}"`;
}

/**
 * Quotes any name PostgreSQL's catalogs hold (`First Name`, `a"b`): for names read from a tenant's
 * schema (a backup of it), never for names from a payload, which must pass quoteIdent.
 */
export function quoteCatalogName(name: string): string {
  if (name.length === 0 || name.includes('\0'))
    throw new PermanentError('invalid_identifier', 'an empty name or one with a NUL');
  return `"${name.replaceAll('"', '""')}"`;
}

export function assertTenantId(id: string): string {
  if (!TENANT_ID.test(id))
    throw new PermanentError('invalid_tenant', `tenant id ${JSON.stringify(id)} is not valid`);
  return id;
}

/** The PostgreSQL schema and the MongoDB database that hold one tenant's data. */
export function tenantNamespace(tenant: string): string {
  return `t_${assertTenantId(tenant)}`;
}
