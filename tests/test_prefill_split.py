"""Short prefill chunks take the key-split attention on the GPU sets (codegen/shapes.py
SPLIT_PREFILL_MAX_N = T): the gpu prefill / score programs hold attention_tiled AND
attention_split + attention_combine, each dispatch's workgroup count multiplied by an indicator
of n, so exactly one of them runs for every 1 <= n <= prefill_chunk.

Whole models (seeded tiny Llama, a tiny Gemma 3 whose sliding-window layers keep ring caches,
and a tiny Gemma 2 whose attention soft-capping changes its logits) forced to the gpu sets on lavapipe, against transformers' logits: after a 140-token
prompt (past the split's 128-key block), chunks of n in {1, T-1, T, T+1, C} through the prefill
program (last row) and the score program (every row). Tolerance: tests/parity.py F16_TOL, 5e-2 x
max(1, max|logit|): the gpu sets store the KV cache as f16 (f16x2), rounding every layer's K/V.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from parity import F16_TOL, bound

from webllm_py.codegen.shapes import SPLIT_PREFILL_MAX_N as T
from webllm_py.ir.graph import eval_dim
from webllm_py.testing.browser import webgpu_browser  # noqa: F401  (the Chromium fixture)

C = 32  # prefill_chunk: > T, so both attention shapes are emitted
HEAD = 140  # prompt before the chunks: p past one 128-key block
CHUNKS = (1, T - 1, T, T + 1, C)
IDS = [(7 * i + 3) % 280 + 2 for i in range(HEAD + sum(CHUNKS))]
GPU_SETS = ("gpu", "gpu-sg")
RING_WINDOW = 40  # > the chunks, and the window straddles the 128-key block boundary at p ~ 140


def _reference_bundle(tmp_path_factory, arch: str, **overrides):
    """(bundle of a seeded tiny `arch` at prefill_chunk C, transformers' f32 logits of IDS, the HF folder)."""
    import torch
    from conftest import make_tiny_model
    from transformers import AutoModelForCausalLM

    import webllm_py

    from test_gemma import ARCHS

    spec = ARCHS.get(arch)
    folder = make_tiny_model(tmp_path_factory.mktemp(f"hf-{arch}"), arch, spec=spec, **overrides)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        ref = hf(torch.tensor([IDS])).logits[0].numpy()
    bundle = webllm_py.build(folder, tmp_path_factory.mktemp(f"b-{arch}") / "b", quantization="f32",
                             progress=False, prefill_chunk=C)
    return bundle, ref, folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return _reference_bundle(tmp_path_factory, "llama")[:2]


@pytest.fixture(scope="module")
def ring_gemma(tmp_path_factory):
    return _reference_bundle(tmp_path_factory, "gemma3_text", sliding_window=RING_WINDOW)[:2]


@pytest.fixture(scope="module")
def softcap_gemma(tmp_path_factory):
    """Gemma 2: attention and final soft-capping (test_gemma's caps) with alternating windows, so
    the tiled kernel's softcap runs at model level too (the tiny bundles' chunk is T: split only)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    bundle, ref, folder = _reference_bundle(tmp_path_factory, "gemma2", sliding_window=RING_WINDOW)
    # the attention cap must matter on these ids, or the kernels' cap would go unchecked
    cfg = AutoConfig.from_pretrained(folder, attn_logit_softcapping=None)
    with torch.no_grad():
        uncapped = AutoModelForCausalLM.from_pretrained(folder, config=cfg, dtype=torch.float32)(
            torch.tensor([IDS])).logits[0].numpy()
    assert np.abs(uncapped[HEAD:] - ref[HEAD:]).max() > 10 * bound(ref, F16_TOL)
    return bundle, ref


def _family(kernel: str) -> str:
    return kernel.split("_act-")[0]


def _attention_dispatches(program: dict) -> list[dict]:
    return [d for d in program["dispatches"] if _family(d["kernel"]).startswith("attention")]


def _count(d: dict, n: int, p: int) -> int:
    x, y, z = (eval_dim(w, {"n": n, "p": p}) for w in d["workgroups"])
    assert min(x, y, z) >= 0, d
    return x * y * z


@pytest.mark.parametrize("bundle_name", ["llama", "ring_gemma", "softcap_gemma"])
def test_prefill_programs_gate_both_shapes(bundle_name, request):
    """The gpu sets' prefill and score programs: per layer tiled, split, combine, gated by the
    indicators; at every n exactly one shape runs (split iff n <= T). Decode keeps the ungated
    split + combine; the cpu sets never see the split."""
    bundle, _ = request.getfixturevalue(bundle_name)
    m = json.loads((bundle / "manifest.json").read_text())
    short, long = f"({T + C} - n) // {C}", f"(n + {C - T - 1}) // {C}"
    for name in GPU_SETS:
        for prog in ("prefill", "score"):
            att = _attention_dispatches(m["programs"][name][prog])
            fams = [_family(d["kernel"]) for d in att]
            assert fams and fams == ["attention_tiled", "attention_split", "attention_combine"] * (len(fams) // 3)
            for d in att:
                gate = long if _family(d["kernel"]) == "attention_tiled" else short
                assert d["workgroups"][0].endswith(f" * ({gate})"), d["workgroups"]
            for n in range(1, C + 1):
                for p in (0, HEAD, 256 - n):
                    ran = {_family(d["kernel"]) for d in att if _count(d, n, p)}
                    want = {"attention_split", "attention_combine"} if n <= T else {"attention_tiled"}
                    assert ran == want, (name, prog, n, p)
        decode = _attention_dispatches(m["programs"][name]["decode"])
        assert {_family(d["kernel"]) for d in decode} == {"attention_split", "attention_combine"}
        assert all(" * (" not in str(d["workgroups"]) for d in decode)
    for name in ("f32", "f16", "idot"):
        for prog in m["programs"].get(name, {}).values():
            assert all(_family(d["kernel"]) == "attention" for d in _attention_dispatches(prog))


def test_split_scratch_sized_for_t_queries():
    """In the prefill form the split's partial scratch holds T queries (all it sees there), not C;
    a prefill form whose chunk is at most T is the split alone, sized for its chunk."""
    from webllm_py.codegen.attention_gpu import DEFAULT_BLOCK, partial_elements
    from webllm_py.codegen.shapes import GPU, AttentionOp

    def op(max_n):
        return AttentionOp("f32", "f16x2", 4, 2, 16, 0.25, "prefill", 256, max_n)

    steps = GPU.attention(op(C))
    assert [s.scratch for s in steps] == [0] + [partial_elements(4, 16, 256, DEFAULT_BLOCK, T)] * 2
    small = GPU.attention(op(8))
    assert [s.key.family for s in small] == ["attention_split", "attention_combine"]
    assert all(not s.gate and s.scratch == partial_elements(4, 16, 256, DEFAULT_BLOCK, 8) for s in small)


def _run_chunks(model) -> tuple[np.ndarray, np.ndarray]:
    """(last-row logits of each chunk through prefill / decode, every row of the chunks through
    score), each after HEAD ids prefilled."""
    lasts, rows = [], []
    model.reset()
    model.forward(IDS[:HEAD])
    at = HEAD
    for n in CHUNKS:
        lasts.append(model.forward(IDS[at:at + n]))  # n == 1: the decode program
        at += n
    model.reset()
    model.forward(IDS[:HEAD])
    at = HEAD
    for n in CHUNKS:  # the score program at the current position (no public call keeps the cache)
        rows.append(np.concatenate(model._chunks("all", IDS[at:at + n]), axis=0))
        at += n
    return np.stack(lasts), np.concatenate(rows, axis=0)


@pytest.mark.parametrize("precision", GPU_SETS)
@pytest.mark.parametrize("bundle_name", ["llama", "ring_gemma", "softcap_gemma"])
def test_gpu_chunks_match_transformers(bundle_name, precision, request, adapter):
    import webllm_py

    bundle, ref = request.getfixturevalue(bundle_name)
    if bundle_name == "ring_gemma":
        m = json.loads((bundle / "manifest.json").read_text())
        assert any("ring" in b for b in m["buffers"].values())  # the sliding-window layers keep rings
    model = webllm_py.load(bundle, backend="native", precision=precision, adapter=adapter)
    try:
        lasts, rows = _run_chunks(model)
    finally:
        model.close()
    ends = np.cumsum(CHUNKS) + HEAD - 1
    tol = bound(ref, F16_TOL)
    for i, n in enumerate(CHUNKS):
        assert np.abs(lasts[i] - ref[ends[i]]).max() <= tol, (precision, n)
    assert np.abs(rows - ref[HEAD:]).max() <= tol, precision


@pytest.mark.slow
@pytest.mark.browser
def test_chromium_gpu_set_short_and_long_chunks(llama, webgpu_browser):  # noqa: F811
    """The npm package in Chromium (SwiftShader) with the gpu set forced: after HEAD ids, chunks
    of T (the split) and T + 1 (tiled) through the prefill program give transformers' last-row
    logits (F16_TOL, as natively)."""
    from test_browser import _ensure_dist

    from conftest import REPO
    from webllm_py.testing.browser import StaticServer

    bundle, ref = llama
    _ensure_dist()
    ids = IDS[:HEAD + T + T + 1]
    routes = {"/dist/": REPO / "web" / "dist", "/test_pages/": REPO / "web" / "test_pages", "/b/": bundle}
    with StaticServer(routes) as server:
        page = webgpu_browser.new_page(server.url("/test_pages/engine.html"))
        page.wait_for_function("window.webllmReady === true")
        got = page.evaluate("""async ([url, ids, head, t]) => {
          const engine = await webllm.CreateEngine(url, { precision: "gpu" });
          const m = engine.model;
          await m.forward(ids.slice(0, head));
          const a = Array.from(await m.forward(ids.slice(head, head + t)));
          const b = Array.from(await m.forward(ids.slice(head + t)));
          await engine.unload();
          return [a, b];
        }""", [server.url("/b/"), ids, HEAD, T])
        page.context.close()
    tol = bound(ref, F16_TOL)
    assert np.abs(np.array(got[0]) - ref[HEAD + T - 1]).max() <= tol
    assert np.abs(np.array(got[1]) - ref[HEAD + 2 * T]).max() <= tol


def test_profile_times_only_the_dispatches_that_run(llama, adapter):
    """`webllm-py profile` (runtime/profile.py) on the gpu set's prefill program: the gated-off
    attention shape is not dispatched, so the dispatch counts differ by the shapes' steps per layer
    (tiled 1, split + combine 2) and the tiled kernel appears only above T."""
    import webllm_py
    from webllm_py.runtime.profile import profile_step

    model = webllm_py.load(llama[0], backend="native", precision="gpu", profile=True)
    try:
        short, long = (profile_step(model, "prefill", n=n, p=HEAD, repeats=1) for n in (T, T + 1))
    finally:
        model.close()
    layers = long["families"]["attention_tiled"]["dispatches"]  # one per layer
    assert layers >= 2 and short["dispatches"] - long["dispatches"] == layers
    assert short["families"]["attention_split"]["dispatches"] == short["families"]["attention_combine"]["dispatches"] == layers
    assert "attention_tiled" not in short["families"] and "attention_split" not in long["families"]
