// sampleFromProbs's candidate bands (top_p, top_k, min_p; ties, -Infinity, a tail below 2^-54)
// against the literal reading of docs/sampling.md steps 6-7: every id ordered (prob desc,
// lower id first), the three prefixes, the walk. Ids must be equal: the spec fixes every sum.
import assert from "node:assert/strict";
import { test } from "node:test";

import { sampleFromProbs, softmaxProbs, uniform } from "../src/sampler.js";

/** @param {Float64Array} p @param {number} topP @param {number} u01 @param {number} topK @param {number} minP */
function literal(p, topP, u01, topK, minP) {
  const order = Array.from(p, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let kept = order.length;
  if (topP < 1) {
    let cum = 0;
    for (kept = 0; kept < order.length; ) if ((cum += p[order[kept++]]) >= topP) break;
  }
  if (topK > 0) kept = Math.min(kept, topK);
  if (minP > 0) {
    const t = minP * p[order[0]];
    let m = 0;
    for (let k = 0; k < kept; k++) if (p[order[k]] >= t) m++;
    kept = m;
  }
  let ks = 0;
  for (let k = 0; k < kept; k++) ks += p[order[k]];
  const u = u01 * ks;
  let run = 0;
  for (let k = 0; k < kept; k++) if ((run += p[order[k]]) > u) return order[k];
  return order[kept - 1];
}

/** A deterministic float32-valued row of one of the shapes. @param {number} V @param {string} kind */
function row(V, kind) {
  const x = new Float64Array(V);
  for (let i = 0; i < V; i++) {
    const g = Math.sin(i * 12.9898 + V + kind.length) * 43758.5453;
    const r = g - Math.floor(g); // in [0, 1)
    let v = r * 10 - 5;
    if (kind === "peaked") v += i % 4099 === 17 ? 14 : 0;
    else if (kind === "ties") v = [-3, 0, 1, 2, 2, 4.5][Math.floor(r * 6)];
    else if (kind === "flat") v = 0;
    else if (kind === "masked") v = r < 0.95 && i !== 3 ? -Infinity : v;
    else if (kind === "wide") v = (r - 0.5) * 200; // most probabilities below 2^-54 or 0
    x[i] = Math.fround(v);
  }
  return x;
}

test("bands equal the literal reading: shapes x top_p x top_k x min_p x draws", () => {
  for (const V of [7, 3000, 20000]) {
    for (const kind of ["normal", "peaked", "ties", "flat", "masked", "wide"]) {
      for (const temperature of [0.5, 1.5]) {
        const p = softmaxProbs(row(V, kind), temperature);
        for (const topP of [0.5, 0.9, 0.999, 1]) {
          for (const topK of [0, 1, 20, 64]) {
            for (const minP of [0, 0.05]) {
              for (const u of [0, uniform(V, 1), 1 - 2 ** -24]) {
                const want = literal(p, topP, u, topK, minP);
                assert.equal(sampleFromProbs(p, topP, u, topK, minP), want, JSON.stringify({ V, kind, temperature, topP, topK, minP, u }));
              }
            }
          }
        }
      }
    }
  }
});

test("bands equal the literal reading at V = 262144 (Gemma 3) with the generation_config settings", () => {
  const p = softmaxProbs(row(262144, "peaked"), 1);
  for (const [topP, topK] of [[0.9, 0], [0.95, 64], [0.8, 20], [1, 64]]) {
    for (const u of [0.25, 1 - 2 ** -24]) assert.equal(sampleFromProbs(p, topP, u, topK, 0), literal(p, topP, u, topK, 0));
  }
});

test("a 4-id row and rows that are no distribution (sums 0.35, ~0, a negative first value) give the literal reading's id", () => {
  for (const probs of [[0.2, 0.1, 0.3, 0.4], [0.1, 0.2, 0.05, 0], [1e-300, 2e-300, 3e-300], [-0.25, 0.3, 0.2]]) {
    const p = Float64Array.from(probs);
    for (const [topP, topK, minP] of [[0.9, 0, 0], [1, 2, 0], [0.5, 0, 0.5]]) {
      for (const u of [0, 0.3, 1 - 2 ** -24]) assert.equal(sampleFromProbs(p, topP, u, topK, minP), literal(p, topP, u, topK, minP));
    }
  }
});
