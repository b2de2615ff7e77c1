"""Embedding bundles in headless Chromium (the npm package on SwiftShader WebGPU) vs transformers and native.

Tolerances (the issue's): tiny BERT (mean pooling, normalized), XLM-RoBERTa (CLS) and Qwen3
(causal, last token) in Chromium match transformers' pooled outputs within 2e-4 (f32
programs); all-MiniLM-L6-v2's browser embeddings equal the native runtime's within 1e-4.
The browser and native runtimes run the same kernels on two drivers (SwiftShader vs
lavapipe), whose f32 rounding (fma contraction, exp, inverseSqrt) differs slightly: on the
tiny Qwen3 the two differ by up to ~1.2e-4, each within 2e-4 of transformers. Texts of
different lengths go in one batch, one longer than max_seq_length (the JS tokenizer does not
truncate by itself: embeddings.js does, as HF tokenizers' truncation); OpenAI's response
shape and errors are checked in the page.
"""

from __future__ import annotations

import base64

import numpy as np
import pytest

from webllm_py.testing.browser import webgpu_browser  # noqa: F401  (the Chromium fixture)

from test_browser import _eval, _open, page_server  # the same page and dist as the chat tests

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TEXTS = ["the quick brown fox", "Semantic search ranks documents by the cosine of their embeddings",
         "ünïcödé 文字 🙂", "a long text " * 40]
ARCHS = ["bert", "xlm-roberta", "qwen3"]


@pytest.fixture(scope="module")
def server(tiny_encoder_bundles):
    with page_server({f"/e/{a}/": tiny_encoder_bundles(a, "f32") for a in ARCHS}) as s:
        yield s


CREATE_AND_EMBED = """async ([url, texts]) => {
  const engine = await webllm.CreateEngine(url, { precision: "f32" });
  const r = await engine.embeddings.create({ input: texts });
  const b64 = await engine.embeddings.create({ input: texts.slice(0, 1), encoding_format: "base64", dimensions: 8 });
  const errors = [];
  for (const bad of [{ input: texts, temperature: 1 }, { input: "" }, { input: "a", dimensions: 0 }]) {
    try { await engine.embeddings.create(bad); errors.push(null); } catch (e) { errors.push(e.message); }
  }
  try { await engine.chat.completions.create({ messages: [{ role: "user", content: "hi" }] }); errors.push(null); }
  catch (e) { errors.push(e.message); }
  await engine.unload();
  return { r, b64, errors };
}"""


@pytest.mark.parametrize("arch", ARCHS)
def test_browser_embeddings_match_transformers(webgpu_browser, server, tiny_encoders, tiny_encoder_bundles, arch):
    from tokenizers import Tokenizer

    from encoder_fixtures import TINY_ENCODERS
    from test_encoder_models import hf_pooled

    bundle = tiny_encoder_bundles(arch, "f32")
    rows = [e.ids for e in Tokenizer.from_file(str(bundle / "tokenizer.json")).encode_batch(TEXTS)]
    _, kw, st = TINY_ENCODERS[arch]
    ref = hf_pooled(tiny_encoders[arch], rows, st["pooling"], st["normalize"], kw["pad_token_id"])
    page = _open(webgpu_browser, server)
    got = _eval(webgpu_browser, page, CREATE_AND_EMBED, [server.url(f"/e/{arch}/"), TEXTS])
    r = got["r"]
    assert r["object"] == "list" and [d["index"] for d in r["data"]] == [0, 1, 2, 3]
    tokens = sum(map(len, rows))
    assert r["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}  # the long text truncated as natively
    ours = np.array([d["embedding"] for d in r["data"]], np.float32)
    assert np.abs(ours - ref).max() <= 2e-4
    # dimensions=8 as base64: the page's own full embedding cut to 8 (renormalized when the model
    # normalizes: a division by a norm ~0.3 would triple the cross-driver noise, so not vs native)
    short = np.frombuffer(base64.b64decode(got["b64"]["data"][0]["embedding"]), "<f4")
    cut = ours[0, :8] / (np.linalg.norm(ours[0, :8]) if st["normalize"] else 1.0)
    assert short.shape == (8,) and np.abs(short - cut).max() <= 1e-6
    e = got["errors"]
    assert "unknown field temperature" in e[0] and "input[0] is an empty string" in e[1]
    assert "dimensions must be an integer in 1..64" in e[2] and "is an embedding model: it cannot chat" in e[3]
    page.context.close()


def test_minilm_browser_equals_native(webgpu_browser, tmp_path_factory):
    from test_minilm import QUERY, DOCS, TEXTS as MINILM_TEXTS, minilm_folder
    from webllm_py import Engine, build

    bundle = build(minilm_folder(), tmp_path_factory.mktemp("minilm-browser") / "b", progress=False)  # default q8
    texts = MINILM_TEXTS + [QUERY] + DOCS
    want = Engine(bundle, backend="native", precision="f32").embeddings.create(input=texts)
    with page_server({"/m/": bundle}) as srv:
        page = _open(webgpu_browser, srv)
        got = _eval(webgpu_browser, page, """async ([url, texts]) => {
          const engine = await webllm.CreateEngine(url, { precision: "f32" });
          return await engine.embeddings.create({ input: texts });
        }""", [srv.url("/m/"), texts])
    assert got["usage"] == want.usage.to_dict()
    ours = np.array([d["embedding"] for d in got["data"]], np.float32)
    assert np.abs(ours - np.array([d.embedding for d in want.data], np.float32)).max() <= 1e-4
