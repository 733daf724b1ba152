/**
 * The operator's side of a deployment, in one typed module (`dbfleet.config.ts`), like vitest.config.ts.
 * Secrets never live here: a tenant override names the environment variable that holds its URL.
 */
import { pathToFileURL } from 'node:url';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { IDENTIFIER, isReservedName } from '../../queues/fields.ts';
import { mapProblems, type PersonalDataLocation } from '../erase/map.ts';
import { policyProblems, type RetentionPolicy } from '../cleanup/policies.ts';
import { scheduleProblems, type ScheduleConfig } from '../schedules/config.ts';

export type { AnonymiseStrategy, PersonalDataLocation } from '../erase/map.ts';
export type { RetentionPolicy } from '../cleanup/policies.ts';
export type { ScheduleConfig } from '../schedules/config.ts';

export interface TenantOverride {
  /** Name of the environment variable holding this tenant's PostgreSQL URL (its own cluster). */
  postgresUrlEnv?: string;
  mongoUrlEnv?: string;
}

export interface ValidationRule {
  name: string;
  kind: 'required' | 'unique' | 'reference' | 'schema';
  store: 'postgres' | 'mongo';
  target: string;
  fields: string[];
  references?: { store: 'postgres' | 'mongo'; target: string; field: string };
}

export interface DbfleetConfig {
  tenants?: Record<string, TenantOverride>;
  migrations?: { postgres?: string; mongo?: string };
  /** Where each data subject's rows and documents are, and what erasure does to them (src/erase/map.ts). */
  personalData?: PersonalDataLocation[];
  /** What cleanup jobs delete, and how (src/cleanup/policies.ts). */
  retention?: RetentionPolicy[];
  validation?: ValidationRule[];
  /** Jobs run on a cron pattern per tenant, reconciled into BullMQ job schedulers (src/schedules/). */
  schedules?: ScheduleConfig[];
  /** Row schemas for load-fixtures, by name. An object schema: its keys are the PostgreSQL columns. */
  fixtures?: Record<string, z.ZodObject>;
}

/**
 * Checks the config as it is defined: every table or collection it names for jobs to act on is a
 * valid identifier outside the names the fleet reserves for its own records.
 */
export function defineConfig(config: DbfleetConfig): DbfleetConfig {
  const problems = targetProblems(config);
  if (problems.length > 0) throw new Error(`invalid dbfleet config:\n  ${problems.join('\n  ')}`);
  return config;
}

function targetProblems(config: DbfleetConfig): string[] {
  const targets: [string, string][] = [
    ...(config.validation ?? []).flatMap((v, i): [string, string][] => [
      [`validation[${i}].target`, v.target],
      ...(v.references
        ? [[`validation[${i}].references.target`, v.references.target] as [string, string]]
        : []),
    ]),
  ];
  const named = targets.flatMap(([where, name]) => {
    if (!IDENTIFIER.test(name)) return [`${where}: ${JSON.stringify(name)} is not an identifier`];
    if (isReservedName(name)) return [`${where}: ${name} is reserved for the fleet's own records`];
    return [];
  });
  return [
    ...mapProblems(config.personalData ?? []),
    ...policyProblems(config.retention ?? []),
    ...scheduleProblems(config.schedules ?? []),
    ...named,
  ];
}

/** Loads the config module: the path given, else `dbfleet.config.ts` in the working folder, else empty. */
export async function loadConfig(file?: string): Promise<DbfleetConfig> {
  const candidate = path.resolve(file ?? 'dbfleet.config.ts');
  if (!existsSync(candidate)) {
    if (file) throw new Error(`config module not found: ${candidate}`);
    return {};
  }
  const mod = (await import(pathToFileURL(candidate).href)) as { default?: DbfleetConfig };
  if (!mod.default) throw new Error(`config module ${candidate} has no default export (use defineConfig)`);
  // Checked here too: a module may export a plain object instead of calling defineConfig.
  return defineConfig(mod.default);
}
