/**
 * TEST UNIT READY (SPC-4 6.47). A kura volume is ready whenever it exists; a pending unit
 * attention has already been reported by the dispatcher before this runs.
 */
import type { ScsiResult } from './task.js';
import { good } from './transfer.js';

export async function testUnitReady(): Promise<ScsiResult> {
  return good();
}
