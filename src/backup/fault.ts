/**
 * A backup that does not check out (a changed object, a manifest of another tenant, a missing key):
 * permanent, with the kind of fault as its code, so failure reasons and metrics name it; the message
 * says which way it is wrong, never what the data holds.
 */
import { PermanentError } from '../errors.ts';

export class BackupFault<F extends string> extends PermanentError {
  readonly fault: F;
  constructor(fault: F, message: string) {
    super(fault, message);
    this.fault = fault;
  }
}
