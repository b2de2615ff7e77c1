// The JS sampler against golden token ids from a plain-Python reading of docs/sampling.md
// (fixtures/make_sampler_golden.py).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  applyPenalties, argmax, logSoftmax, mix32, randomSeed, randomU32, sampleToken, sortDescending, uniform,
} from "../src/sampler.js";

const golden = JSON.parse(readFileSync(new URL("./fixtures/sampler_golden.json", import.meta.url), "utf8"));

test("mix32 matches the u32 reference", () => {
  for (const [x, want] of golden.mix32) assert.equal(mix32(x), want, `mix32(${x})`);
});

test("random_u32 and uniform match for seeds up to 2^53-1 and large counters", () => {
  for (const { seed, counter, u32, uniform: u } of golden.prng) {
    assert.equal(randomU32(seed, counter), u32, `random_u32(${seed}, ${counter})`);
    assert.equal(uniform(seed, counter), u, `uniform(${seed}, ${counter})`);
  }
});

/** xgrammar's bitmask layout of the allowed ids. @param {number[]} allowed @param {number} V */
function bitmaskOf(allowed, V) {
  const words = new Int32Array((V + 31) >> 5);
  for (const t of allowed) words[t >> 5] |= 1 << (t & 31);
  return words;
}

test("sampled token ids equal the Python reference for every case (top_k, min_p and the grammar mask too)", () => {
  let checked = 0;
  for (const c of golden.cases) {
    const logits = Float32Array.from(golden.vectors[c.logits]);
    const bitmask = c.params.allowed ? bitmaskOf(c.params.allowed, logits.length) : null;
    const generated = [];
    for (let counter = 0; counter < c.tokens.length; counter++) {
      const id = sampleToken(logits, { ...c.params, bitmask, seed: c.seed, counter, promptTokens: c.prompt, generatedTokens: generated });
      generated.push(id);
    }
    assert.deepEqual(generated, c.tokens, `${c.logits} ${JSON.stringify(c.params)} seed=${c.seed}`);
    checked++;
  }
  assert.ok(checked > 300);
});

test("logprobs are log-softmax after penalties, before temperature", () => {
  const g = golden.logprobs;
  const x = applyPenalties(Float32Array.from(golden.vectors[g.logits]), {
    ...g.params, promptTokens: g.prompt, generatedTokens: g.generated,
  });
  const lp = logSoftmax(x);
  g.ids.forEach((id, k) => assert.ok(Math.abs(lp[id] - g.values[k]) < 1e-12, `logprob[${id}]`));
});

test("greedy needs no seed; sampling without one is an error; randomSeed is a safe integer", () => {
  assert.equal(sampleToken([0, 3, 3, 1], { temperature: 0 }), 1);
  assert.throws(() => sampleToken([0, 1], { temperature: 1 }), TypeError);
  const s = randomSeed();
  assert.ok(Number.isSafeInteger(s) && s >= 0);
  assert.throws(() => randomU32(2 ** 53, 0), RangeError);
});

/** The spec read literally: full sort of ids (prob desc, lower id first). */
function naiveSample(x, { temperature, top_p = 1, seed, counter = 0 }) {
  const z = Array.from(x, (v) => v / temperature);
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  let s = 0;
  for (const v of e) s += v;
  const p = e.map((v) => v / s);
  const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  let kept = order.length;
  if (top_p < 1) {
    let cum = 0;
    for (kept = 0; kept < order.length; ) if ((cum += p[order[kept++]]) >= top_p) break;
  }
  let ks = 0;
  for (let k = 0; k < kept; k++) ks += p[order[k]];
  const u = uniform(seed, counter) * ks;
  let run = 0;
  for (let k = 0; k < kept; k++) if ((run += p[order[k]]) > u) return order[k];
  return order[kept - 1];
}

test("fast sampler (value radix sort + id lookup) equals the literal full-sort reading", () => {
  for (const V of [10, 3000, 20000]) {
    for (const quant of [0, 4]) {
      const x = new Float64Array(V);
      for (let i = 0; i < V; i++) {
        const g = Math.sin(i * 12.9898 + V) * 43758.5453;
        const v = (g - Math.floor(g)) * 12 - 6 + (i % 997 === 5 ? 8 : 0);
        x[i] = quant ? Math.round(v * quant) / quant : v; // quantized → many exact ties
      }
      for (const temperature of [0.5, 1, 2]) {
        for (const top_p of [1, 0.95, 0.6, 0.1]) {
          for (let counter = 0; counter < 4; counter++) {
            const p = { temperature, top_p, seed: 7 + V, counter };
            assert.equal(sampleToken(x, p), naiveSample(x, p), JSON.stringify({ V, quant, ...p }));
          }
        }
      }
    }
  }
});

test("sortDescending equals the native sort, for short and long arrays with ties and zeros", () => {
  for (const n of [0, 1, 5, 2047, 2048, 50000]) {
    const v = Float64Array.from({ length: n }, (_, i) => (i % 11 === 0 ? 0 : Math.exp(-((i * 7919) % 1000) / 17)));
    assert.deepEqual(sortDescending(v), Float64Array.from(v).sort().reverse(), `n=${n}`);
  }
});

test("argmax is numpy's: lowest id on ties, -0 equals +0, the first NaN wins", () => {
  // expected ids printed by np.argmax(np.array(row, dtype=np.float64)) for each row
  const rows = [[1, 3, 3, 2], [1, NaN, 5, NaN], [NaN, 1], [-Infinity, -Infinity], [0, -0], [-0, 0, 0], [2, Infinity, NaN]];
  const numpy = [1, 1, 0, 0, 0, 0, 2];
  assert.deepEqual(rows.map((r) => argmax(Float32Array.from(r))), numpy);
});
