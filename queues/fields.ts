/** Payload fields shared by several contracts. Identifiers are validated here, at enqueue time. */
import { z } from 'zod';

export const TENANT_ID = /^[a-z][a-z0-9_]{0,39}$/;
export const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

export const tenantId = z
  .string()
  .regex(TENANT_ID, 'must be a tenant id: lowercase letter first, then [a-z0-9_], at most 40 characters');

/** A table, column or collection name: letters, digits and underscores, at most 63 characters. */
export const identifier = z
  .string()
  .regex(IDENTIFIER, 'must be an identifier: letter or _ first, then [A-Za-z0-9_], at most 63 characters');

export const store = z.enum(['postgres', 'mongo']);
export type Store = z.infer<typeof store>;

export const dryRun = z.boolean().default(false);
