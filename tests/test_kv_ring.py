"""Ring KV caches of sliding-window layers (issue 12): a cache of R = window + prefill_chunk - 1
rows where position t lives in row t % R.

Kernels (every cache writer and every attention kernel with `ring`) run on lavapipe (and two on
SwiftShader) against ir/ops.py's references with the same `ring` attr; the ring cache a kernel
sees is what writes in position order leave: row r holds the last position t < p + n with
t % R == r, rows no query may read hold NaN (a kernel reading one fails). Each attention case
also runs the same key without a ring over the whole position-indexed cache: the outputs must
be the same bits (keys are summed in position order either way; that is what keeps KV-prefix
reuse exact).

| what                               | tol        | why                                                     |
|------------------------------------|------------|---------------------------------------------------------|
| attention, kv ""                   | 1e-4       | test_kernels.py's f32 attention tolerance (sum order, exp) |
| attention, kv "f16x2"              | 2e-3       | test_gpu_attention_tiled.py: the reference gets f32 K/V, |
|                                    |            | the kernel their f16 rounding                           |
| ring vs no ring, same kernel       | exact      | same keys, same order: bit-identical                    |
| kv_write / rope_kv v, kv ""        | exact      | a copy                                                  |
| kv_write / rope_kv v, f16x2        | 1 f16 ulp  | pack2x16float's rounding (test_gpu_attention.py)        |
| rope / rope_kv k                   | 1e-5, f16x2 2e-3 | test_kernels.py's elementwise rope; f16 store     |
| rows a step does not write         | exact      | bytes unchanged (no write to another position's row)    |
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from test_gpu_attention import f16_close, run_flash
from test_kernels import (  # noqa: F401  (runner: the module's lavapipe fixture)
    EXTRA, TOL, TOL_ELEMENTWISE, check, f, inv_freq_for, padded, rand, ref_op, rng_for, runner, same_bits,
    sentinel,
)

from webllm_py.codegen import KvWriteKey, RopeKey, RopeKvKey, build
from webllm_py.codegen.attention_gpu import attention_split_key
from webllm_py.codegen.attention_tiled import AttentionTiledKey
from webllm_py.codegen.kernels import AttentionKey
from webllm_py.testing.browser import webgpu_browser  # noqa: F401  (the Chromium fixture)
from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401  (the SwiftShader fixture)

TOL_F16_KV = 2e-3
W, C = 8, 4  # window, largest step: R = W + C - 1
R = W + C - 1
HEADS, KV_HEADS, HD = 4, 2, 16
KVW = KV_HEADS * HD


def ring_of(full: np.ndarray, p: int, n: int, ring: int, store: str) -> np.ndarray:
    """The ring cache that writes of positions 0..p+n-1 in order leave (row r: the last position t
    with t % ring == r), NaN in rows no query of the step reads (positions before p - W + 1)
    and rows never written."""
    out = sentinel((ring, full.shape[1]), store)
    for t in range(max(0, p - W + 1), p + n):
        out[t % ring] = full[t]
    return out


def _attention_key(family: str, kv: str, ring: int):
    scale = 1.0 / math.sqrt(HD)
    if family == "attention_split":
        return attention_split_key("f32", kv, HEADS, KV_HEADS, HD, scale, window=W, ring=ring)
    if family == "attention_tiled":
        return AttentionTiledKey("f32", kv, HEADS, KV_HEADS, HD, scale, window=W, ring=ring)
    return AttentionKey("f32", HEADS, KV_HEADS, HD, scale, form=family.split(":")[1], window=W, ring=ring)


def _run_attention(r, key, q, kc, vc, n, p):
    if key.family == "attention_split":
        return run_flash(r, key, q, kc, vc, n, p)
    out = sentinel((n + EXTRA, HEADS * HD), "f32")
    got = r.run(build(key), {"q": padded(q, "f32"), "k_cache": kc, "v_cache": vc, "out": out}, n, p)["out"]
    same_bits(got[n:], out[n:], "out rows past n")
    return got[:n]


def attention_case(r, family: str, kv: str, n: int, p: int) -> None:
    rng = rng_for("ring_att", family, kv, n, p)
    store = "f16" if kv == "f16x2" else "f32"
    q = rand(rng, (n, HEADS * HD), "f32", 2.0)
    kf, vf = rand(rng, (p + n, KVW), store, 2.0), rand(rng, (p + n, KVW), store)
    kr, vr = ring_of(kf, p, n, R, store), ring_of(vf, p, n, R, store)
    key = _attention_key(family, kv, R)
    got = _run_attention(r, key, q, kr, vr, n, p)
    # the reference reads the ring through ir/ops.py's row map; NaN rows (never in a window) as 0
    ref = ref_op("attention", [q, np.nan_to_num(f(kr)), np.nan_to_num(f(vr))], n, p, heads=HEADS,
                 kv_heads=KV_HEADS, head_dim=HD, scale=key.scale, window=W, ring=R)
    check(got, ref, TOL_F16_KV if kv else TOL["f32"], key.name)
    nan_tail = lambda a: np.concatenate([a, sentinel((EXTRA, KVW), store)])  # noqa: E731
    plain = _run_attention(r, _attention_key(family, kv, 0), q, nan_tail(kf), nan_tail(vf), n, p)
    same_bits(got, plain, f"{key.name} vs the same kernel without a ring")


# p + n wraps the 11-row ring 3 times (p 30) or not yet (p 2: rows never written are NaN)
@pytest.mark.parametrize("family,kv,n,p", [
    ("attention:decode", "", 1, 30), ("attention:decode", "", 4, 2), ("attention:prefill", "", 4, 30),
    ("attention_split", "", 1, 30), ("attention_split", "f16x2", 1, 41),
    ("attention_tiled", "", 4, 30), ("attention_tiled", "f16x2", 4, 2), ("attention_tiled", "f16x2", 3, 37)])
def test_attention_ring(runner, family, kv, n, p):
    attention_case(runner, family, kv, n, p)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("family,kv,n,p", [("attention_tiled", "f16x2", 4, 30), ("attention_split", "f16x2", 1, 30)])
def test_attention_ring_swiftshader(browser_kernel_runner, family, kv, n, p):  # noqa: F811
    attention_case(browser_kernel_runner, family, kv, n, p)


def _old_ring(rng, store: str) -> np.ndarray:
    return rand(rng, (R, KVW), store)  # earlier positions' rows: only the step's rows may change


def _check_rows(got, before, ref, p, n, kv, tol, what):
    rows = [(p + i) % R for i in range(n)]
    if kv:
        if tol is None:
            f16_close(got[rows], ref, what)
        else:
            check(got[rows], ref, tol, what)
    elif tol is None:
        same_bits(got[rows], ref.astype(np.float32), what)
    else:
        check(got[rows], ref, tol, what)
    keep = [r for r in range(R) if r not in rows]
    same_bits(got[keep], before[keep], f"{what}: rows the step does not write")


# positions 19..23 of an 11-row ring: rows 8, 9, 10, 0, 1 (p + n wraps it twice)
N_W, P_W = 5, 19


@pytest.mark.parametrize("kv", ["", "f16x2"])
def test_kv_write_ring(runner, kv):
    rng = rng_for("ring_kvw", kv)
    store = "f16" if kv else "f32"
    x = rand(rng, (N_W, KVW), "f32")
    cache = _old_ring(rng, store)
    got = runner.run(build(KvWriteKey("f32", KVW, kv=kv, ring=R)), {"x": padded(x, "f32"), "cache": cache},
                     N_W, P_W)["cache"]
    ref = f(cache)
    ref_op("kv_write", [x, ref], N_W, P_W, ring=R)
    _check_rows(got, cache, ref[[(P_W + i) % R for i in range(N_W)]], P_W, N_W, kv, None, "kv_write ring")


@pytest.mark.parametrize("kv", ["", "f16x2"])
def test_rope_to_cache_ring(runner, kv):
    rng = rng_for("ring_rope", kv)
    store = "f16" if kv else "f32"
    x, inv = rand(rng, (N_W, KVW), "f32"), inv_freq_for(HD)
    cache = _old_ring(rng, store)
    k = build(RopeKey("f32", KV_HEADS, HD, to_cache=True, kv=kv, ring=R))
    got = runner.run(k, {"x": padded(x, "f32"), "inv_freq": inv, "cache": cache}, N_W, P_W)["cache"]
    ref = ref_op("rope", [x, inv], N_W, P_W, heads=KV_HEADS, head_dim=HD)  # rotated at the positions, not rows
    _check_rows(got, cache, ref, P_W, N_W, kv, TOL_F16_KV if kv else TOL_ELEMENTWISE["f32"], k.name)


@pytest.mark.parametrize("kv", ["", "f16x2"])
def test_rope_kv_ring(runner, kv):
    rng = rng_for("ring_ropekv", kv)
    store = "f16" if kv else "f32"
    q, kk, v = rand(rng, (N_W, HEADS * HD), "f32"), rand(rng, (N_W, KVW), "f32"), rand(rng, (N_W, KVW), "f32")
    inv = inv_freq_for(HD)
    caches = {name: _old_ring(rng, store) for name in ("k_cache", "v_cache")}
    k = build(RopeKvKey("f32", HEADS, KV_HEADS, HD, kv=kv, ring=R))
    got = runner.run(k, {"q": padded(q, "f32"), "k": padded(kk, "f32"), "v": padded(v, "f32"), "inv_freq": inv,
                         **caches}, N_W, P_W)
    check(got["q"][:N_W], ref_op("rope", [q, inv], N_W, P_W, heads=HEADS, head_dim=HD), TOL_ELEMENTWISE["f32"],
          "rope_kv q")
    k_ref = ref_op("rope", [kk, inv], N_W, P_W, heads=KV_HEADS, head_dim=HD)
    _check_rows(got["k_cache"], caches["k_cache"], k_ref, P_W, N_W, kv, TOL_F16_KV if kv else TOL_ELEMENTWISE["f32"],
                "rope_kv k ring")
    _check_rows(got["v_cache"], caches["v_cache"], v, P_W, N_W, kv, None, "rope_kv v ring")


@pytest.mark.browser
@pytest.mark.slow
def test_rope_kv_ring_swiftshader(browser_kernel_runner):  # noqa: F811
    """Tint compiles the ring row map (kv_row) of a writer too."""
    rng = rng_for("ring_ropekv_ss")
    kk, v = rand(rng, (N_W, KVW), "f32"), rand(rng, (N_W, KVW), "f32")
    q, inv = rand(rng, (N_W, HEADS * HD), "f32"), inv_freq_for(HD)
    caches = {name: _old_ring(rng, "f16") for name in ("k_cache", "v_cache")}
    k = build(RopeKvKey("f32", HEADS, KV_HEADS, HD, kv="f16x2", ring=R))
    got = browser_kernel_runner.run(k, {"q": padded(q, "f32"), "k": padded(kk, "f32"), "v": padded(v, "f32"),
                                        "inv_freq": inv, **caches}, N_W, P_W)
    _check_rows(got["v_cache"], caches["v_cache"], v, P_W, N_W, "f16x2", None, "rope_kv v ring (SwiftShader)")


def test_ring_zero_renders_todays_wgsl():
    """ring 0 leaves a key and its WGSL as they were (the golden digests: tests/test_program_sets.py)."""
    for key in (KvWriteKey("f32", KVW), AttentionTiledKey("f32", "f16x2", HEADS, KV_HEADS, HD, 0.25, window=W)):
        assert "ring" not in key.name and "kv_row" not in build(key).wgsl and "RING" not in build(key).wgsl


@pytest.mark.parametrize("key,msg", [
    (lambda: AttentionKey("f32", HEADS, KV_HEADS, HD, 0.25, ring=R), "needs a sliding window"),
    (lambda: AttentionTiledKey("f32", "", HEADS, KV_HEADS, HD, 0.25, window=12, ring=R), "needs a sliding window"),
    (lambda: KvWriteKey("f32", KVW, ring=-1), "ring must be an integer >= 0"),
    (lambda: RopeKey("f32", KV_HEADS, HD, ring=R), "to_cache=True only"),
])
def test_ring_key_errors(key, msg):
    with pytest.raises(ValueError, match=msg) as e:
        build(key())
    assert "\n" not in str(e.value)


# -- a tiny seeded Gemma 3 with ring caches -------------------------------------------------
# sliding_window 8, prefill_chunk 4: R = 11 rows < context_window 256 on the 5 local layers.
# Tolerances: test_gemma.py's (2e-4 x max|logit| f32: summation order only; 5e-2 for the sets
# storing activations or KV as f16). 37 prompt tokens + 20 greedy ones wrap the ring 5 times.

GEN = 20


@pytest.fixture(scope="module")
def ring_model(tmp_path_factory):
    """(bundle, transformers' logits of prompt + its greedy continuation, those ids)."""
    return ring_bundle(tmp_path_factory)


def ring_bundle(tmp_path_factory):
    import torch
    from conftest import make_tiny_model
    from test_gemma import ARCHS, PROMPT
    from transformers import AutoModelForCausalLM

    import webllm_py

    folder = make_tiny_model(tmp_path_factory.mktemp("hf-ring"), "gemma3_text", spec=ARCHS["gemma3_text"])
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        full = hf.generate(torch.tensor([PROMPT]), max_new_tokens=GEN, do_sample=False, eos_token_id=1,
                           pad_token_id=1)[0].tolist()
        ref = hf(torch.tensor([full])).logits[0].numpy()
    bundle = webllm_py.build(folder, tmp_path_factory.mktemp("b-ring") / "b", quantization="f32", progress=False,
                             prefill_chunk=C)
    return bundle, ref, full


def _manifest(bundle):
    import json

    return json.loads((bundle / "manifest.json").read_text())


def test_ring_bundle_manifest(ring_model):
    bundle, _, _ = ring_model
    m = _manifest(bundle)
    states = {k: b for k, b in m["buffers"].items() if b["kind"] == "state"}
    rings = {k for k, b in states.items() if "ring" in b}
    assert rings == {f"cache.{i}.{kv}" for i in range(5) for kv in "kv"}  # the 5 local layers; layer 5 is global
    for k, b in states.items():
        assert b["elements"] == (R if k in rings else m["context_window"]) * KVW
        assert k not in rings or b["window"] == W


def test_ring_reference_matches_transformers(ring_model):
    import webllm_py
    from test_gemma import PROMPT, bound

    bundle, ref, full = ring_model
    model = webllm_py.load(bundle, backend="reference", precision="f32")
    assert np.abs(model.logits(full) - ref).max() <= bound(ref, 2e-4)
    assert model.generate(PROMPT, max_new_tokens=GEN) == full[len(PROMPT):]


def test_ring_native_every_program_set_matches_transformers(ring_model, adapter):
    from parity import F16_STORAGE_SETS, bound, native_program_sets, set_tol
    from test_gemma import PROMPT

    bundle, ref, full = ring_model
    for name, model in native_program_sets(bundle, adapter, {"f32", "gpu"}):
        tol = bound(ref, set_tol(name))
        assert np.abs(model.logits(full) - ref).max() <= tol, name  # score: prefill forms, steps of 4
        model.reset()
        steps = np.stack([model.forward([t]) for t in full])  # decode, the ring wrapped 5 times
        assert np.abs(steps - ref).max() <= tol, name
        model.reset()
        if name not in F16_STORAGE_SETS:
            assert model.generate(PROMPT, max_new_tokens=GEN) == full[len(PROMPT):], name


# -- sizing, memory estimate, validation ------------------------------------------------------

@pytest.mark.parametrize("rows", [5, 11, 100])
def test_kv_sizing_ring_buffers_hold_min_ring_rows(ring_model, rows):
    from webllm_py.runtime.kv_sizing import memory_estimate, round16, sized_buffers

    m = _manifest(ring_model[0])
    sized = sized_buffers(m, rows)
    kv = 0
    for name, b in m["buffers"].items():
        if b["kind"] == "state":
            held = min(R, rows) if "ring" in b else rows
            assert sized[name]["elements"] == held * KVW, name
            kv += round16(held * KVW * 2)  # the gpu set: f16x2 KV, 2 bytes per element
    assert memory_estimate(m, "gpu", rows).kv_cache_bytes == kv


def test_inspect_reports_rings_and_memory(ring_model):
    """`webllm-py inspect` names the ring caches and each set's KV bytes: the rows computed here
    (5 rings of R rows and 1 full layer of context_window rows, K and V) x the set's KV bytes."""
    import subprocess
    import sys

    from webllm_py.bundle_summary import inspect_summary

    m = _manifest(ring_model[0])
    s = inspect_summary(ring_model[0])
    assert s["ring_kv_caches"] == {"caches": 12, "rings": 10, "rows": [R], "windows": [W]}
    elements = 2 * (5 * R + m["context_window"]) * KVW
    assert s["memory"]["f32"]["kv_cache_bytes"] == elements * 4
    assert s["memory"]["gpu"]["kv_cache_bytes"] == elements * 2  # f16x2
    out = subprocess.run([sys.executable, "-m", "webllm_py.cli", "inspect", str(ring_model[0])],
                         capture_output=True, text=True, check=True).stdout
    assert f"ring KV caches: 10 of 12 (sliding-window layers: {R} rows for a window of {W})" in out
    assert f"GPU memory at context {m['context_window']}" in out


def _break(m, name, **change):
    m["buffers"][name] = {k: v for k, v in {**m["buffers"][name], **change}.items() if v is not None}
    return m


@pytest.mark.parametrize("change,msg", [
    (dict(ring=256, elements=256 * KVW), r'buffers\["cache.0.k"\].ring: .*'),  # ring >= context_window
    (dict(window=None), r'buffers\["cache.0.k"\].window: missing'),  # ring without window
    (dict(elements=R * KVW - 4), r'elements: .* is not ring x width'),
    (dict(ring=None), r'buffers\["cache.0.k"\].ring: missing'),  # the graphs' ring without it
])
def test_bad_ring_manifests_are_one_line_errors(ring_model, change, msg):
    from webllm_py.bundle.validate import validate_manifest
    from webllm_py.errors import BundleError

    m = _break(_manifest(ring_model[0]), "cache.0.k", **change)
    with pytest.raises(BundleError, match=msg) as e:
        validate_manifest(m, ring_model[0] / "manifest.json")
    assert "\n" not in str(e.value)


def test_window_on_a_full_cache_is_an_error(ring_model):
    from webllm_py.bundle.validate import validate_manifest
    from webllm_py.errors import BundleError

    m = _break(_manifest(ring_model[0]), "cache.5.k", window=W)
    with pytest.raises(BundleError, match=r'cache.5.k"\].window: .*not a ring'):
        validate_manifest(m, ring_model[0] / "manifest.json")


# -- the reuse ledger's ring rule (the same cases as web/test/kv_ring.test.js) -------------------

LEDGER_CASES = Path(__file__).resolve().parents[1] / "web" / "test" / "fixtures" / "kv_ring_reuse.json"


def run_ledger_case(case: dict) -> list:
    """Apply a case's ops to a KVLedger; the plans' (keep, steps) in order."""
    from webllm_py.runtime.kv_reuse import KVLedger

    led, out = KVLedger(case["rule"], case["chunk"], [tuple(r) for r in case["rings"]]), []
    for op, arg in case["ops"]:
        if op == "wrote":
            led.wrote(arg)
        elif op == "truncate":
            led.truncate(arg)
        else:
            keep, steps = led.plan(arg)
            out.append([keep, [list(s) for s in steps]])
    return out


def test_ledger_ring_rule_shared_cases():
    import json

    cases = json.loads(LEDGER_CASES.read_text())
    for case in cases:
        assert run_ledger_case(case) == case["plans"], case["name"]
    # the cases the rule is about, by hand: rows overwritten -> 0, a recent prefix intact -> kept
    by_name = {c["name"]: c["plans"] for c in cases}
    assert by_name["long shared prefix, rows overwritten"][0][0] == 0
    assert by_name["same prefix without rings"][0][0] == 30
    assert by_name["recent prefix intact"][0][0] == 38
    assert by_name["truncate does not restore rows"][0][0] == 0
    assert by_name["a fresh prefill resets the overwrites"][1][0] == 34


# -- Chromium: the JS runtime's ring sizing and reuse give native's tokens --------------------

@pytest.mark.slow
@pytest.mark.browser
def test_chromium_ring_bundle_gives_natives_tokens(ring_model, webgpu_browser):  # noqa: F811
    """The npm package in Chromium (SwiftShader, f32 programs) on the ring bundle, at the bundle's
    context window and at contextWindowSize 64 (sized buffers, kv_sizing.js: rings keep 11 rows): greedy tokens
    equal native's; then on one engine a long conversation, a prompt sharing its long prefix (rows
    overwritten: kv_reuse.js re-prefills) and one sharing a recent prefix (reused) give native
    fresh engines' completions (token ids only: two drivers' f32 rounding may move logprobs)."""
    import webllm_py
    from test_browser import _ensure_dist
    from test_gemma import PROMPT

    from conftest import REPO
    from webllm_py.runtime.engine import Engine
    from webllm_py.testing.browser import StaticServer

    bundle, _, _ = ring_model
    _ensure_dist()
    native = webllm_py.load(bundle, backend="native", precision="f32")
    tokens = native.generate(PROMPT, max_new_tokens=GEN)
    native.close()
    base = [int(t) for t in np.random.default_rng(5).integers(2, 300, size=60)]
    prompts = [(base[:40], 6), (base[:30] + base[50:56], 2), (base[:30] + base[50:56] + base[40:43], 6)]
    fresh = []
    for ids, n in prompts:
        eng = Engine(bundle, backend="native", precision="f32")
        fresh.append(eng.completions.create(prompt=ids, max_tokens=n, temperature=0).choices[0].text)
    routes = {"/dist/": REPO / "web" / "dist", "/test_pages/": REPO / "web" / "test_pages", "/b/": bundle}
    with StaticServer(routes) as server:
        page = webgpu_browser.new_page(server.url("/test_pages/engine.html"))
        page.wait_for_function("window.webllmReady === true")
        got = page.evaluate("""async ([url, prompt, gen, prompts]) => {
          const out = { gen: [], texts: [], keeps: [], rings: null };
          for (const contextWindowSize of [undefined, 64]) {
            const engine = await webllm.CreateEngine(url, { precision: "f32", contextWindowSize });
            out.gen.push(await engine.model.generate(prompt, gen));
            out.rings = engine.model.kvRings;
            await engine.unload();
          }
          const engine = await webllm.CreateEngine(url, { precision: "f32" });
          for (const [ids, n] of prompts) {
            out.keeps.push(engine._kv ? engine._kv.plan(ids)[0] : 0);  // rows the ledger will keep
            const r = await engine.completions.create({ prompt: ids, max_tokens: n, temperature: 0 });
            out.texts.push(r.choices[0].text);
          }
          await engine.unload();
          return out;
        }""", [server.url("/b/"), PROMPT, GEN, prompts])
        page.context.close()
    assert got["rings"] == [[R, W]]
    assert got["gen"] == [tokens, tokens]
    assert got["texts"] == fresh
    assert got["keeps"][1] == 0 and got["keeps"][2] > 30  # overwritten: re-prefilled; recent: reused
