"""Probe for the next decode kernel: integer q4a GEMV on pre-packed activations vs today's kernel.

    .venv/bin/python bench/probe_int_gemv.py [--shapes 3072x576,576x1536] [--rounds 3]

An experiment, not used by the runtimes: it measures whether replacing the
per-weight float unpack (shift, mask, convert, fma) by integer SWAR arithmetic
pays on this adapter before the compiler grows the kernels and buffers for it.

The idea (what llama.cpp does on CPUs with Q8_1 activations): quantize x once
per token to 9-bit integers per group of 32 (scale sx = max|x| / 255), and pack
two of them per u32 as x_b + x_a * 2^16. A q4 weight word is 8 nibbles n_0..n_7;
(w >> 4k) & 0x000F000F holds n_k and n_{k+4} in 16-bit fields, and one u32
multiply by the packed (x_{k+4} + x_k * 2^16) leaves n_k x_k + n_{k+4} x_{k+4}
in the high half (the cross term n_k x_{k+4} stays below 2^15 in the low half).
Four such products (one word, 8 weights) sum without overflow (|sum| <= 30600),
so a word costs 7 mask/shift + 4 mul + 3 add + 3 to extract: ~2.1 ops per
weight instead of ~4.3. The output equals x_dequantized . w exactly.

Kernels here: `pack` (x -> packed pairs + per-group (sx, sum q)), `int_gemv`
(rpi rows per invocation, like the production kernel). Baseline: the production
decode matmul for the same shape (webllm_py.codegen.kernels.matmul_key). Rounds
alternate baseline and variants; medians of 7 submissions of 20 dispatches.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from webllm_py.codegen.kernels import Kernel, build, matmul_key
from webllm_py.codegen.runner import KernelRunner, request_device
from webllm_py.quant import quantize

STEP = "struct Step {{ n: u32, p: u32, _pad0: u32, _pad1: u32, }}\n"  # doubled braces: templates go through str.format

PACK = STEP + """
// x (COLS,) f32 -> xq (COLS/2,) u32: word 4g+k of group g packs q[8k'+j+4] + q[8k'+j] * 2^16 pairs;
// xs[g] = (sx, sum of q over the group). One invocation per group of 32; COLS % 32 == 0.
@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> xq: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> xs: array<vec2<f32>>;
@group(0) @binding(3) var<uniform> step: Step;
const G: u32 = {groups}u;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
  let g = gid.x;
  if (g >= G) {{ return; }}
  var m = vec4<f32>(0.0);
  for (var i = 0u; i < 8u; i++) {{ m = max(m, abs(x[g * 8u + i])); }}
  let mx = max(max(m.x, m.y), max(m.z, m.w));
  let inv = select(0.0, 255.0 / mx, mx > 0.0);
  var tot = vec4<i32>(0);
  for (var k = 0u; k < 4u; k++) {{
    let lo = vec4<i32>(round(x[g * 8u + 2u * k] * inv));       // columns 8k..8k+3
    let hi = vec4<i32>(round(x[g * 8u + 2u * k + 1u] * inv));  // columns 8k+4..8k+7
    tot += lo + hi;
    xq[g * 4u + k] = bitcast<vec4<u32>>(hi + lo * 65536i);
  }}
  xs[g] = vec2<f32>(mx / 255.0, f32(tot.x + tot.y + tot.z + tot.w));
}}
"""

GEMV = STEP + """
// out (ROWS,) f32 = dequant_q4a(w) . dequant(xq); w (ROWS, COLS) q4a, COLS % 32 == 0; {rpi} rows per invocation.
@group(0) @binding(0) var<storage, read> xq: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read> xs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> scales: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<uniform> step: Step;
const ROWS: u32 = {rows}u;
const G: u32 = {groups}u;
const M: u32 = 0x000F000Fu;

// sum_k n_k x_k over one weight word (8 nibbles) against its 4 packed activation pairs
fn word_dot(w: u32, xv: vec4<u32>) -> i32 {{
  let p = (w & M) * xv.x + ((w >> 4u) & M) * xv.y + ((w >> 8u) & M) * xv.z + ((w >> 12u) & M) * xv.w;
  return bitcast<i32>(p + 0x8000u) >> 16u;
}}

@compute @workgroup_size({wg}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {{
  let r0 = gid.x * {rpi}u;
  if (r0 >= ROWS) {{ return; }}
{decl}
  for (var g = 0u; g < G; g++) {{
    let x0 = xq[g * 4u];
    let x1 = xq[g * 4u + 1u];
    let x2 = xq[g * 4u + 2u];
    let x3 = xq[g * 4u + 3u];
    let xg = xs[g];
{body}
  }}
{store}
}}
"""


def pack_kernel(cols: int) -> Kernel:
    groups = cols // 32
    return Kernel(key=None, name="probe_pack", wgsl=PACK.format(groups=groups),
                  bindings=(("x", "read"), ("xq", "read_write"), ("xs", "read_write"), ("step", "uniform")),
                  workgroup_size=(64, 1, 1), dispatch=(str(-(-groups // 64)), "1", "1"))


def int_gemv_kernel(rows: int, cols: int, rpi: int, wg: int) -> Kernel:
    decl = "\n".join(f"  let wr{j} = min(r0 + {j}u, ROWS - 1u);\n  var acc{j} = 0.0;" for j in range(rpi))
    body = "\n".join(
        f"    let wv{j} = w[wr{j} * G + g];\n"
        f"    let sl{j} = unpack2x16float(scales[wr{j} * G + g]);  // (scale, lo): w = scale * n + lo\n"
        f"    let i{j} = word_dot(wv{j}.x, x0) + word_dot(wv{j}.y, x1) + word_dot(wv{j}.z, x2) + word_dot(wv{j}.w, x3);\n"
        f"    acc{j} += xg.x * (sl{j}.x * f32(i{j}) + sl{j}.y * xg.y);" for j in range(rpi))
    store = "\n".join(f"  if (r0 + {j}u < ROWS) {{ out[r0 + {j}u] = acc{j}; }}" for j in range(rpi))
    src = GEMV.format(rows=rows, groups=cols // 32, wg=wg, rpi=rpi, decl=decl, body=body, store=store)
    return Kernel(key=None, name=f"probe_int_gemv_rpi{rpi}_wg{wg}", wgsl=src,
                  bindings=(("xq", "read"), ("xs", "read"), ("w", "read"), ("scales", "read"), ("out", "read_write"),
                            ("step", "uniform")),
                  workgroup_size=(wg, 1, 1), dispatch=(str(-(-rows // (wg * rpi))), "1", "1"))


def time_kernel(runner: KernelRunner, k: Kernel, arrays: dict, repeat: int = 20) -> float:
    runner.run(k, arrays, n=1, repeat=1)
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        runner.run(k, arrays, n=1, repeat=repeat)
        ts.append((time.perf_counter() - t0) / repeat)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="3072x576,576x1536")
    ap.add_argument("--variants", default="4x16,8x16,8x32", help="rpi x wg of the integer kernel")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    _, device = request_device()
    runner = KernelRunner(device)
    rng = np.random.default_rng(0)
    for shape in args.shapes.split(","):
        rows, cols = map(int, shape.split("x"))
        parts = quantize(rng.standard_normal((rows, cols)).astype(np.float32), "q4a")
        x = rng.standard_normal((1, cols)).astype(np.float32)
        base = build(matmul_key("f32", "q4a", rows, cols))
        base_arrays = {"x": x, "w": parts["data"], "scales": parts["scales"], "out": np.zeros((1, rows), np.float32)}
        ref = runner.run(base, base_arrays, n=1)["out"][0]
        pack = pack_kernel(cols)
        pack_arrays = {"x": x, "xq": np.zeros(cols // 2, np.uint32), "xs": np.zeros((cols // 32, 2), np.float32)}
        packed = runner.run(pack, pack_arrays, n=1)
        variants = {}
        for v in args.variants.split(","):
            rpi, wg = map(int, v.split("x"))
            k = int_gemv_kernel(rows, cols, rpi, wg)
            arrays = {"xq": packed["xq"], "xs": packed["xs"], "w": parts["data"], "scales": parts["scales"],
                      "out": np.zeros(rows, np.float32)}
            got = runner.run(k, arrays, n=1)["out"]
            err = float(np.abs(got - ref).max() / np.abs(ref).max())
            variants[v] = (k, arrays, err)
        times: dict[str, list[float]] = {"base": [], "pack": [], **{v: [] for v in variants}}
        for _ in range(args.rounds):
            times["base"].append(time_kernel(runner, base, base_arrays))
            times["pack"].append(time_kernel(runner, pack, pack_arrays))
            for v, (k, arrays, _) in variants.items():
                times[v].append(time_kernel(runner, k, arrays))
        tb = statistics.median(times["base"])
        tp = statistics.median(times["pack"])
        print(f"{shape} q4a: production kernel (rpi={base.key.rpi}, wg={base.key.wg}) {tb * 1e6:.0f} us; "
              f"pack {tp * 1e6:.0f} us")
        for v, (_, _, err) in variants.items():
            t = statistics.median(times[v])
            print(f"  int rpi x wg = {v}: {t * 1e6:.0f} us ({tb / t:.2f}x; with its pack {tb / (t + tp):.2f}x), "
                  f"max error {err:.1e} of max|out| (9-bit activations)")


if __name__ == "__main__":
    main()
