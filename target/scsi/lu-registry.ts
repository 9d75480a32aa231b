/**
 * The logical units of one node by NAA identifier. EXTENDED COPY names its copy source and
 * destination by a VPD 83h designator, so the copy manager (any LU) must be able to reach every LU
 * of the node, across targets. One registry per node; a device server without one gets its own.
 */
import type { LogicalUnit } from './logical-unit.js';

export class LuRegistry {
  private readonly byNaa = new Map<bigint, LogicalUnit>();

  /**
   * A volume exported through two targets is two LogicalUnit objects with one NAA identifier and
   * one volume behind them: the first one registered answers for both.
   */
  add(lu: LogicalUnit): void {
    const naa = lu.identity.naa;
    if (naa !== undefined && !this.byNaa.has(naa)) this.byNaa.set(naa, lu);
  }

  find(naa: bigint): LogicalUnit | undefined {
    return this.byNaa.get(naa);
  }
}
