/**
 * Where a tenant's jobs may read sources from (and, for the jobs to come, write to): folders and S3
 * prefixes templated by tenant, `/srv/fixtures/{tenant}` or `s3://bucket/tenants/{tenant}/`. A job for
 * one tenant never reaches another's files or objects, nor anything else the fleet's credentials can.
 */
import path from 'node:path';
import { assertTenantId } from '../stores/identifiers.ts';

export const TENANT_PLACEHOLDER = '{tenant}';

export interface SourceTemplates {
  /** Absolute folders, each with `{tenant}` as one whole path segment. */
  fileRoots: readonly string[];
  /** `s3://bucket/prefix/` strings, each with `{tenant}` as one whole key segment. */
  s3Prefixes: readonly string[];
}

export interface TenantScope {
  readonly fileRoots: readonly string[];
  readonly s3Prefixes: readonly string[];
}

/** Why a template is unusable, or undefined: `{tenant}` must stand as a whole segment, once. */
export function templateProblem(template: string, kind: 'folder' | 's3'): string | undefined {
  const segments = (kind === 's3' ? template.replace(/^s3:\/\//, '') : template).split('/');
  const holders = segments.filter((s) => s.includes(TENANT_PLACEHOLDER));
  if (holders.length !== 1 || holders[0] !== TENANT_PLACEHOLDER)
    return `must contain ${TENANT_PLACEHOLDER} once, as a whole path segment (e.g. ${kind === 's3' ? 's3://bucket/tenants/{tenant}/' : '/srv/fixtures/{tenant}'})`;
  if (kind === 's3' && !/^s3:\/\/[a-z0-9][a-z0-9.-]{1,62}\//.test(template))
    return 'must start with s3://bucket/';
  if (kind === 'folder' && !path.isAbsolute(template)) return 'must be an absolute folder';
  return undefined;
}

export function scopeFor(templates: SourceTemplates, tenant: string): TenantScope {
  const id = assertTenantId(tenant);
  return {
    fileRoots: templates.fileRoots.map((t) => t.replace(TENANT_PLACEHOLDER, id)),
    // Always ending in '/', so that tenant `a` does not reach `ab/`.
    s3Prefixes: templates.s3Prefixes.map((t) => {
      const expanded = t.replace(TENANT_PLACEHOLDER, id);
      return expanded.endsWith('/') ? expanded : `${expanded}/`;
    }),
  };
}

/**
 * Whether an `s3://bucket/key` URL lies under one of the scope's prefixes. Keys with empty, `.` or
 * `..` segments are refused outright: S3 takes them literally, but proxies and S3-compatible servers
 * may not.
 */
export function s3UrlAllowed(url: string, scope: TenantScope): boolean {
  const key = url.replace(/^s3:\/\/[^/]+\//, '');
  if (key.split('/').some((s) => s === '' || s === '.' || s === '..')) return false;
  return scope.s3Prefixes.some((prefix) => url.startsWith(prefix));
}

/** The deployment's templates: from the environment, else a `fixtures/{tenant}` folder and bucket prefix. */
export function sourceTemplates(env: {
  DBFLEET_FILE_ROOTS?: string[] | undefined;
  DBFLEET_S3_SOURCES?: string[] | undefined;
  DBFLEET_S3_BUCKET: string;
}): SourceTemplates {
  return {
    fileRoots: env.DBFLEET_FILE_ROOTS ?? [path.resolve('fixtures', TENANT_PLACEHOLDER)],
    s3Prefixes: env.DBFLEET_S3_SOURCES ?? [`s3://${env.DBFLEET_S3_BUCKET}/tenants/${TENANT_PLACEHOLDER}/`],
  };
}
