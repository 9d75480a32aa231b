/**
 * RFC 1982 serial number arithmetic on 32 bits: CmdSN, StatSN, DataSN and R2TSN wrap, so
 * comparisons must look at the signed distance, never at the raw values.
 */
export function snAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** Signed distance a - b, meaningful while the two are less than 2^31 apart. */
export function snDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export function snLt(a: number, b: number): boolean {
  return snDiff(a, b) < 0;
}

export function snLe(a: number, b: number): boolean {
  return snDiff(a, b) <= 0;
}

/** a <= x <= b in serial order. */
export function snInWindow(x: number, a: number, b: number): boolean {
  return snDiff(x, a) >= 0 && snDiff(b, x) >= 0;
}
