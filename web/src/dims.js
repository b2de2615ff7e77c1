// Workgroup-count expressions of the manifest ("(n * 4 + 63) // 64") compiled to functions of
// (n, p), without eval: the grammar of webllm_py.ir.graph.
import { BundleError } from "./errors.js";

/** @typedef {(n: number, p: number) => number} DimFn */

/**
 * Compile a workgroup-count expression of the manifest ("(n * 4 + 63) // 64") into a
 * function of (n, p). The grammar is webllm_py.ir.graph's: integers, n, p, + - * //
 * (floor division, as Python) and parentheses. Built as closures, not `new Function`, so
 * pages with a strict Content-Security-Policy (no 'unsafe-eval') can run it.
 * @param {string|number} expr
 * @returns {DimFn}
 */
export function compileDim(expr) {
  if (typeof expr === "number") {
    if (!Number.isInteger(expr)) throw new BundleError(`workgroup count ${expr} is not an integer`);
    return () => expr;
  }
  const src = String(expr);
  const tokens = src.match(/\d+|\/\/|[np+\-*()]|\S/g) ?? [];
  let i = 0;
  const fail = (/** @type {string} */ why) => {
    throw new BundleError(`bad workgroup expression ${JSON.stringify(src)}: ${why}`);
  };
  /** @returns {DimFn} */
  const atom = () => {
    const t = tokens[i++];
    if (t === undefined) return fail("unexpected end");
    if (/^\d+$/.test(t)) {
      const v = Number(t);
      return () => v;
    }
    if (t === "n") return (n) => n;
    if (t === "p") return (_n, p) => p;
    if (t === "-") {
      const a = atom();
      return (n, p) => -a(n, p);
    }
    if (t === "(") {
      const e = sum();
      if (tokens[i++] !== ")") fail("missing )");
      return e;
    }
    return fail(`unexpected ${JSON.stringify(t)}`);
  };
  /** @returns {DimFn} */
  const product = () => {
    let a = atom();
    while (tokens[i] === "*" || tokens[i] === "//") {
      const op = tokens[i++];
      const l = a, r = atom();
      a = op === "*"
        ? (n, p) => l(n, p) * r(n, p)
        : (n, p) => {
            const d = r(n, p);
            if (d === 0) throw new BundleError(`division by zero in workgroup expression ${JSON.stringify(src)}`);
            return Math.floor(l(n, p) / d); // Python // floors toward -inf; exact for these magnitudes
          };
    }
    return a;
  };
  /** @returns {DimFn} */
  const sum = () => {
    let a = product();
    while (tokens[i] === "+" || tokens[i] === "-") {
      const op = tokens[i++];
      const l = a, r = product();
      a = op === "+" ? (n, p) => l(n, p) + r(n, p) : (n, p) => l(n, p) - r(n, p);
    }
    return a;
  };
  const f = sum();
  if (i !== tokens.length) fail(`unexpected ${JSON.stringify(tokens[i])}`);
  return f;
}
