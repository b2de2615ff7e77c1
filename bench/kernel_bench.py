"""Time kernel variants inside headless Chromium's WebGPU (SwiftShader): the browser twin of tune_matmul.py.

    .venv/bin/python bench/kernel_bench.py                       # SmolLM2-135M decode shapes, all families
    .venv/bin/python bench/kernel_bench.py --families matmul --wg 8,16,32 --rpi 2,4 --json out.json

Python renders each variant with webllm_py.codegen (build(key) -> WGSL, bindings, dispatch) and
hands it to bench/browser/kernels.html, which creates the buffers once per shape (random
contents), builds the pipeline (createComputePipelineAsync) and times K back-to-back dispatches
of that one variant in one compute pass, one submission (wall clock around submit ->
onSubmittedWorkDone; and timestamp-query at the pass's start and end when the adapter has it).
K is chosen so one submission takes ~--target-ms; the median of --reps submissions is reported
as µs per dispatch, with GB/s of the bytes each dispatch must read (matmul: the quantized weight
incl. scales; attention: the K and V cache rows 0..p; rope_kv: q, k, v and the written cache rows).

Shapes (SmolLM2-135M, decode n=1, f32 activations: SwiftShader has no shader-f16):
  qkv       960x576 q4a, RMSNorm prologue, splits (576, 192, 192)    (fused q/k/v projection)
  o_proj    576x576 q4a
  gate_up   [1536;1536]x576 q4a, RMSNorm prologue, silu_mul epilogue (3072 weight rows)
  down      576x1536 q4a, residual epilogue
  lm_head   49152x576 q8, last_row
  lm_head_norm  the same with the RMSNorm prologue (as in the models)
  *_idot / o_proj_pack  the same on packed activations / packing their output (program set idot;
                lm_head_idot: int8 x and dot4I8Packed)
  attention heads 9, kv_heads 3, head_dim 64 at p = 64 and 512 (decode form, lanes = wg)
  rope_kv   heads 9, kv_heads 3, head_dim 64
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from webllm_py.codegen.kernels import AttentionKey, Kernel, MatmulKey, RopeKvKey, build, matmul_key  # noqa: E402
from webllm_py.quant import quantize  # noqa: E402
from webllm_py.testing.browser import StaticServer, WebGPUBrowser, browser_skip_reason  # noqa: E402

HEADS, KV_HEADS, HEAD_DIM, HIDDEN = 9, 3, 64, 576

# label -> MatmulKey fields (besides wg / rpi / tn)
MATMUL_SHAPES: dict[str, dict[str, Any]] = {
    "qkv": dict(fmt="q4a", rows=960, cols=576, norm=True, norm_eps=1e-5, splits=(576, 192, 192)),
    "o_proj": dict(fmt="q4a", rows=576, cols=576),
    "gate_up": dict(fmt="q4a", rows=1536, cols=576, norm=True, norm_eps=1e-5, epilogue="silu_mul"),
    "down": dict(fmt="q4a", rows=576, cols=1536, epilogue="residual"),
    "lm_head": dict(fmt="q8", rows=49152, cols=576, last_row=True),
    # program set "idot": the same matmuls on packed activations (xq) and/or packing their output
    "qkv_idot": dict(fmt="q4a", rows=960, cols=576, norm=True, norm_eps=1e-5, splits=(576, 192, 192), xq=True),
    "o_proj_pack": dict(fmt="q4a", rows=576, cols=576, epilogue="residual", pack=True),
    "gate_up_idot": dict(fmt="q4a", rows=1536, cols=576, norm=True, norm_eps=1e-5, epilogue="silu_mul",
                         xq=True, pack=True),
    "down_idot": dict(fmt="q4a", rows=576, cols=1536, epilogue="residual", xq=True, pack=True),
    # the LM head as the models run it (RMSNorm prologue), on f32 x and on int8 x (dot4I8Packed)
    "lm_head_norm": dict(fmt="q8", rows=49152, cols=576, last_row=True, norm=True, norm_eps=1e-5),
    "lm_head_idot": dict(fmt="q8", rows=49152, cols=576, last_row=True, norm=True, norm_eps=1e-5, xq=True),
}


def _r16(n: int) -> int:
    return max(16, -(-n // 16) * 16)


def weight_bytes(fmt: str, rows: int, cols: int) -> dict[str, int]:
    """Logical byte sizes of each part of a (rows, cols) weight in `fmt`."""
    parts = quantize(np.zeros((1, cols), np.float32), fmt)  # per-row layout, then scale by rows
    return {k: v.nbytes * rows for k, v in parts.items()}


def matmul_variant(label: str, key: MatmulKey, n: int = 1) -> dict[str, Any]:
    k = build(key)
    wrows = 2 * key.rows if key.epilogue == "silu_mul" else key.rows
    wb = weight_bytes(key.fmt, wrows, key.cols)
    out_rows = 1 if key.last_row else n
    sizes = {"x": n * key.cols * 4, "norm_w": key.cols * 4, "w": wb["data"], "scales": wb.get("scales", 0),
             "bias": wrows * 4, "out": out_rows * (key.out_rows or key.rows) * 4, "step": 16,
             "xq": n * key.cols // 2 * 4, "xs": n * key.cols // 4 * 4, "pack_w": key.rows * 4,
             "outq": n * key.rows // 2 * 4, "outs": n * key.rows // 4 * 4}
    for i, s in enumerate(key.splits):
        sizes[f"out{i}"] = n * s * 4
    fill = {"w": "u32", "scales": "scales"}
    return _variant(label, k, sizes, fill, (n, 0), bytes_read=sum(wb.values()), buf_key=f"mm:{label}:{n}")


def attention_variant(label: str, key: AttentionKey, p: int, n: int = 1) -> dict[str, Any]:
    k = build(key)
    qw, kvw = key.heads * key.head_dim, key.kv_heads * key.head_dim
    ctx = p + n
    sizes = {"q": n * qw * 4, "k_cache": ctx * kvw * 4, "v_cache": ctx * kvw * 4, "out": n * qw * 4, "step": 16}
    return _variant(label, k, sizes, {}, (n, p), bytes_read=2 * ctx * kvw * 4, buf_key=f"attn:{label}:{p}:{n}")


def rope_kv_variant(label: str, key: RopeKvKey, p: int, n: int = 1) -> dict[str, Any]:
    k = build(key)
    qw, kvw = key.heads * key.head_dim, key.kv_heads * key.head_dim
    ctx = p + n
    sizes = {"q": n * qw * 4, "k": n * kvw * 4, "v": n * kvw * 4, "inv_freq": key.head_dim // 2 * 4,
             "k_cache": ctx * kvw * 4, "v_cache": ctx * kvw * 4, "step": 16}
    touched = n * (2 * qw + 4 * kvw) * 4  # q read + written, k and v read, two cache rows written
    return _variant(label, k, sizes, {}, (n, p), bytes_read=touched, buf_key=f"rope:{label}:{p}:{n}")


def _variant(label: str, k: Kernel, sizes: dict[str, int], fill: dict[str, str], step: tuple[int, int],
             bytes_read: int, buf_key: str) -> dict[str, Any]:
    n, p = step
    return {"label": label, "name": k.name, "wgsl": k.wgsl, "bindings": [list(b) for b in k.bindings],
            "sizes": {name: _r16(sizes[name]) for name, _ in k.bindings}, "fill": fill, "step": [n, p],
            "dispatch": list(k.dispatch_for(n, p)), "workgroup_size": list(k.workgroup_size),
            "bytes": bytes_read, "bufKey": buf_key, "key": k.key.to_json()}


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    fams = set(args.families.split(","))
    if "matmul" in fams:
        for label in args.shapes.split(","):
            f = MATMUL_SHAPES[label]
            default = matmul_key("f32", f["fmt"], f["rows"], f["cols"], last_row=f.get("last_row", False),
                                 norm=f.get("norm", False), norm_eps=f.get("norm_eps", 0.0),
                                 epilogue=f.get("epilogue", "none"), splits=f.get("splits", ()),
                                 xq=f.get("xq", False), pack=f.get("pack", False))
            seen = set()
            for wg, rpi in itertools.product(ints(args.wg), ints(args.rpi)):
                seen.add((wg, rpi))
                try:
                    key = MatmulKey(act="f32", tn=1, wg=wg, rpi=rpi, **f)
                    v = matmul_variant(label, key)
                except ValueError:
                    continue
                v["default"] = (wg, rpi) == (default.wg, default.rpi)
                out.append(v)
            if (default.wg, default.rpi) not in seen:  # always time matmul_key's pick too
                v = matmul_variant(label, default)
                v["default"] = True
                out.append(v)
    for p in ints(args.p):
        if "attention" in fams:
            for wg in ints(args.attn_wg):
                key = AttentionKey(act="f32", heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                                   scale=HEAD_DIM ** -0.5, form="decode", wg=wg)
                try:
                    v = attention_variant(f"attention p={p}", key, p)
                except ValueError:
                    continue
                v["default"] = wg == AttentionKey(act="f32", heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                                                  scale=1.0).lanes()
                out.append(v)
    if "rope_kv" in fams:
        for wg in ints(args.rope_wg):
            v = rope_kv_variant("rope_kv", RopeKvKey(act="f32", heads=HEADS, kv_heads=KV_HEADS, head_dim=HEAD_DIM,
                                                     wg=wg), max(ints(args.p) or [0]))
            v["default"] = wg == 64
            out.append(v)
    return out


def knobs(v: dict[str, Any]) -> str:
    k = v["key"]
    if k["family"] == "matmul":
        return f"wg={k['wg']:<3d} rpi={k['rpi']}"
    return f"wg={v['workgroup_size'][0]:<3d}"


def print_table(results: list[dict[str, Any]], use_ts: bool) -> None:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by.setdefault(r["label"], []).append(r)
    col = "us_ts" if use_ts else "us_wall"
    print(f"\n| shape | variant | µs/dispatch ({'timestamp' if use_ts else 'wall'}) | µs wall | GB/s | vs default | K | compile ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for label, rs in by.items():
        ok = [r for r in rs if "error" not in r and r.get(col)]
        ok.sort(key=lambda r: r[col])
        dflt = next((r[col] for r in ok if r.get("default")), None)
        mib = rs[0]["bytes"] / 2**20
        for r in ok:
            t = r[col]
            rel = f"{dflt / t:.2f}x" if dflt else ""
            mark = " (default)" if r.get("default") else ""
            print(f"| {label} ({mib:.2f} MiB) | {knobs(r)}{mark} | {t:.1f} | {r['us_wall']:.1f} | "
                  f"{r['bytes'] / t / 1e3:.2f} | {rel} | {r['repeat']} | {r['compile_ms']:.0f} |")
        for r in rs:
            if "error" in r:
                print(f"| {label} | {knobs(r)} | error: {r['error'][:80]} | | | | | |")


def environment(browser: WebGPUBrowser, info: dict[str, Any]) -> dict[str, Any]:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"chromium": browser.browser.version, "adapter": info, "cpu": cpu, "cpus": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="matmul,attention,rope_kv")
    ap.add_argument("--shapes", default=",".join(MATMUL_SHAPES), help=f"matmul shapes of {list(MATMUL_SHAPES)}")
    ap.add_argument("--wg", default="4,8,16,32,64", help="matmul workgroup sizes")
    ap.add_argument("--rpi", default="1,2,4,8", help="matmul rows per invocation")
    ap.add_argument("--attn-wg", default="1,2,4,8,16,32", help="attention decode lanes")
    ap.add_argument("--rope-wg", default="32,64,128,256")
    ap.add_argument("--p", default="64,512", help="cached tokens for attention (rope_kv uses the largest)")
    ap.add_argument("--reps", type=int, default=5, help="submissions per variant (median)")
    ap.add_argument("--rounds", type=int, default=1, help="whole sweeps; the median over rounds is reported")
    ap.add_argument("--repeat", type=int, default=0, help="dispatches per submission (0: ~--target-ms worth)")
    ap.add_argument("--target-ms", type=float, default=60.0)
    ap.add_argument("--cold-mib", type=float, default=0.0,
                    help="rotate through copies of each matmul's weights totalling this many MiB (reads from memory, "
                         "as in a model, instead of from cache); 0: one copy")
    ap.add_argument("--wall", action="store_true", help="sort by wall-clock time even when timestamps exist")
    ap.add_argument("--json", help="write all results and the environment here")
    args = ap.parse_args()
    reason = browser_skip_reason()
    if reason:
        sys.exit(reason)
    vs = variants(args)
    print(f"{len(vs)} variants", file=sys.stderr)
    results: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    with StaticServer({"/": ROOT / "bench" / "browser"}) as srv, WebGPUBrowser() as browser:
        page = browser.new_page(srv.url("/kernels.html"), timeout_ms=600_000)
        page.wait_for_function("window.kernelsReady === true")
        info = page.evaluate("() => window.initKernels()")
        env = environment(browser, info)
        print(json.dumps(env), file=sys.stderr)
        per: list[list[dict[str, Any]]] = [[] for _ in vs]
        for rnd in range(args.rounds):  # whole sweeps, so slow drift of the machine hits every variant alike
            for i, v in enumerate(vs):
                cfg = {k: v[k] for k in ("name", "wgsl", "bindings", "sizes", "fill", "step", "dispatch", "bufKey")}
                cfg.update(repeat=args.repeat, reps=args.reps, targetMs=args.target_ms,
                           copies=min(64, max(1, round(args.cold_mib * 2**20 / v["bytes"]))) if args.cold_mib and v["label"] in MATMUL_SHAPES else 1)
                res = page.evaluate("(v) => window.timeVariant(v)", cfg)
                per[i].append(res)
                if "error" in res:
                    msg = f"error {res['error'][:200]}"
                else:
                    msg = f"{res['us_wall']:9.1f} us wall" + (f" {res['us_ts']:9.1f} us ts" if res.get("us_ts") else "")
                print(f"[{rnd + 1}.{i + 1}/{len(vs)}] {v['label']:<18} {knobs(v):<14} {msg}", file=sys.stderr)
        for v, rs in zip(vs, per):
            r = {k: v[k] for k in ("label", "name", "key", "bytes", "dispatch", "workgroup_size", "default")}
            good = [x for x in rs if "error" not in x]
            if not good:
                r.update(rs[0])
            else:  # median over rounds of each round's median
                r.update(good[0])
                for col in ("us_wall", "us_ts", "compile_ms"):
                    vals = [x[col] for x in good if x.get(col) is not None]
                    r[col] = statistics.median(vals) if vals else None
                r["rounds"] = good
            results.append(r)
        if any("uncaptured" in c or "[pageerror]" in c for c in browser.console):
            print(browser.console_tail(), file=sys.stderr)
    elapsed = time.perf_counter() - t_start
    use_ts = not args.wall and all(r.get("us_ts") for r in results if "error" not in r)
    print_table(results, use_ts)
    print(f"\n{len(results)} variants in {elapsed:.0f} s; chromium {env['chromium']}, adapter "
          f"{info.get('vendor')}/{info.get('architecture')} ({info.get('description')}), "
          f"timestamp-query {info.get('timestamp_query')}, {env['cpus']} CPUs {env['cpu']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"env": env, "args": vars(args), "elapsed_s": elapsed,
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
