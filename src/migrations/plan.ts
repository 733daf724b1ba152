/** Pure planning: what is drifted, what goes up, what comes down. No I/O, so unit tests cover it. */
import { PermanentError } from '../errors.ts';
import { compareVersions, type AppliedMigration, type Migration } from './types.ts';

export interface Drift {
  version: string;
  /** The migration's file name (from the folder, or as history recorded it when the file is gone). */
  file: string;
  reason: 'edited' | 'missing';
}

const fileOf = (a: AppliedMigration) => `${a.version}_${a.name}`;

/** Applied migrations whose file changed since, or is gone. */
export function findDrift(
  available: readonly Migration<never>[],
  applied: readonly AppliedMigration[],
): Drift[] {
  const byVersion = new Map(available.map((m) => [m.version, m]));
  const drift: Drift[] = [];
  for (const a of applied) {
    const m = byVersion.get(a.version);
    if (!m) drift.push({ version: a.version, file: fileOf(a), reason: 'missing' });
    else if (m.checksum !== a.checksum) drift.push({ version: a.version, file: m.file, reason: 'edited' });
  }
  return drift;
}

export function driftError(store: string, drift: readonly Drift[]): PermanentError {
  const list = drift.map((d) => `${d.file} (${d.reason} after it was applied)`).join(', ');
  return new PermanentError(
    'migration_drift',
    `${store}: ${list}; restore the file, or accept it on purpose with: dbfleet migrate repair`,
  );
}

/** Pending migrations up to `to` (all when absent), in version order. */
export function planUp<M extends Migration<never>>(
  available: readonly M[],
  applied: readonly AppliedMigration[],
  to?: string,
): M[] {
  const done = new Set(applied.map((a) => a.version));
  return available.filter(
    (m) => !done.has(m.version) && (to === undefined || compareVersions(m.version, to) <= 0),
  );
}

/** Applied migrations above `to`, newest first; refuses before anything runs if one has no down. */
export function planDown<M extends Migration<never>>(
  available: readonly M[],
  applied: readonly AppliedMigration[],
  to: string,
): M[] {
  const byVersion = new Map(available.map((m) => [m.version, m]));
  const revert = applied
    .filter((a) => compareVersions(a.version, to) > 0)
    .sort((a, b) => compareVersions(b.version, a.version))
    .map((a) => byVersion.get(a.version)!);
  const irreversible = revert.filter((m) => !m.down).map((m) => m.file);
  if (irreversible.length)
    throw new PermanentError('irreversible_migration', `no down migration in ${irreversible.join(', ')}`);
  return revert;
}

export function currentVersion(applied: readonly AppliedMigration[]): string | null {
  return applied.reduce<string | null>(
    (max, a) => (max === null || compareVersions(a.version, max) > 0 ? a.version : max),
    null,
  );
}
