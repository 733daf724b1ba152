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

export class TenantDirectory {
  readonly #env: Env;
  readonly #config: DbfleetConfig;
  readonly #control: ControlDb;
  readonly #known = new Set<string>();
  readonly #vars: NodeJS.ProcessEnv;

  constructor(env: Env, config: DbfleetConfig, control: ControlDb, vars: NodeJS.ProcessEnv = process.env) {
    this.#env = env;
    this.#config = config;
    this.#control = control;
    this.#vars = vars;
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

  /** Whether the tenant is known to exist without asking the database (it was seen before). */
  isKnown(tenant: string): boolean {
    return this.#known.has(tenant);
  }

  /** Throws a permanent error for a tenant that was never added; known tenants are cached. */
  async assertKnown(tenant: string): Promise<void> {
    if (this.#known.has(tenant)) return;
    if (!(await this.#control.tenantExists(tenant))) {
      throw new PermanentError(
        'unknown_tenant',
        `tenant ${tenant} does not exist (add it with: dbfleet tenants add ${tenant})`,
      );
    }
    this.#known.add(tenant);
  }
}
