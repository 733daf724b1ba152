/** Payload fields shared by several contracts. Identifiers are validated here, at enqueue time. */
import { z } from 'zod';

export const TENANT_ID = /^[a-z][a-z0-9_]{0,39}$/;
export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;
/**
 * Tables and collections the fleet keeps in each tenant store (migration history, checkpoints, locks)
 * start with this, in any letter case: no job may target them.
 */
export const RESERVED_PREFIX = '_dbfleet';

export function isReservedName(name: string): boolean {
  return name.toLowerCase().startsWith(RESERVED_PREFIX);
}

export const tenantId = z
  .string()
  .regex(TENANT_ID, 'must be a tenant id: lowercase letter first, then [a-z0-9_], at most 40 characters');

/** A table, column or collection name: letters, digits and underscores, at most 63 characters. */
export const identifier = z
  .string()
  .regex(IDENTIFIER, 'must be an identifier: letter or _ first, then [A-Za-z0-9_], at most 63 characters');

/** A tenant table or collection a job may write: an identifier outside the fleet's reserved names. */
export const targetName = identifier.refine((name) => !isReservedName(name), {
  message: `is reserved for the fleet's own records (names starting with ${RESERVED_PREFIX})`,
});

export const store = z.enum(['postgres', 'mongo']);
export type Store = z.infer<typeof store>;

export const dryRun = z.boolean().default(false);
