/**
 * Restores keep erased people erased: every erasure recorded for the backup's tenant is applied to
 * the restored data before it is opened. The erase job and its ledger are not built yet, so there is
 * nothing to apply; this is where the restore calls it.
 */
import type { FleetDeps } from '../runtime/deps.ts';
import type { StagedData } from './restore-tenant.ts';

export async function reapplyErasures(
  _deps: FleetDeps,
  _sourceTenant: string,
  _staged: StagedData,
): Promise<number> {
  return 0;
}
