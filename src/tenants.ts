/**
 * Where a tenant's data lives: environment templates, overridden per tenant by the config module.
 * Also the gate that refuses jobs for tenants the control database does not know.
 */
import type { DbfleetConfig } from './config/define.ts';
import type { Env } from './config/env.ts';
import type { ControlDb } from './control/control-db.ts';
import { PermanentError } from './errors.ts';
import { tenantNamespace } from './stores/identifiers.ts';

export interface TenantLocation {
  tenant: string;
  postgresUrl: string;
  mongoUrl: string;
  /** The PostgreSQL schema and the MongoDB database name. */
  namespace: string;
}

/**
 * How long a worker trusts that a tenant it saw still exists. `dbfleet tenants remove` cannot reach
 * the long-running workers, so this bounds how long they keep running a removed tenant's jobs,
 * while sparing the control database a query per job.
 */
export const KNOWN_TENANT_TTL_MS = 30_000;

export class TenantDirectory {
  readonly #env: Env;
  readonly #config: DbfleetConfig;
  readonly #control: ControlDb;
  /** Tenant id to the time (the clock's milliseconds) until which it counts as known. */
  readonly #known = new Map<string, number>();
  readonly #vars: NodeJS.ProcessEnv;
  readonly #now: () => number;

  constructor(
    env: Env,
    config: DbfleetConfig,
    control: ControlDb,
    vars: NodeJS.ProcessEnv = process.env,
    now: () => number = Date.now,
  ) {
    this.#env = env;
    this.#config = config;
    this.#control = control;
    this.#vars = vars;
    this.#now = now;
  }

  locate(tenant: string): TenantLocation {
    const override = this.#config.tenants?.[tenant];
    const fromVar = (name: string | undefined) => {
      if (!name) return undefined;
      const value = this.#vars[name];
      if (!value)
        throw new PermanentError(
          'tenant_config',
          `tenant ${tenant}: environment variable ${name} is not set`,
        );
      return value;
    };
    return {
      tenant,
      namespace: tenantNamespace(tenant),
      postgresUrl:
        fromVar(override?.postgresUrlEnv) ??
        this.#env.DBFLEET_TENANT_POSTGRES_URL ??
        this.#env.DBFLEET_CONTROL_DATABASE_URL,
      mongoUrl: fromVar(override?.mongoUrlEnv) ?? this.#env.DBFLEET_TENANT_MONGO_URL,
    };
  }

  /**
   * Whether the tenant is known to exist without asking the database: it was seen less than
   * KNOWN_TENANT_TTL_MS ago.
   */
  isKnown(tenant: string): boolean {
    const until = this.#known.get(tenant);
    return until !== undefined && until > this.#now();
  }

  /**
   * Throws a permanent error for a tenant that was never added or has been removed; a tenant that
   * exists is then known for KNOWN_TENANT_TTL_MS.
   */
  async assertKnown(tenant: string): Promise<void> {
    if (this.isKnown(tenant)) return;
    if (!(await this.#control.tenantExists(tenant))) {
      this.#known.delete(tenant);
      throw new PermanentError(
        'unknown_tenant',
        `tenant ${tenant} does not exist (add it with: dbfleet tenants add ${tenant})`,
      );
    }
    this.#known.set(tenant, this.#now() + KNOWN_TENANT_TTL_MS);
  }
}
