// f16 logits readback: IEEE half to float, one value or a whole array through a table.

/** @type {Float32Array|null} */
let HALF_TABLE = null;

/** IEEE half (as a u16) to float. @param {number} h */
export function halfToFloat(h) {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24; // zero / subnormal
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Convert f16 values to f32 into `out` through a 65536-entry table (256 KiB, built once:
 * a table lookup per logit keeps the per-token conversion of a 150k vocabulary cheap).
 * @param {Uint16Array} src @param {Float32Array} out
 */
export function halfsToFloats(src, out) {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  const t = HALF_TABLE;
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]];
  return out;
}
