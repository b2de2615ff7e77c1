"""GPU argmax for greedy decoding (codegen/argmax.py, runtime/gpu_sampling.py) and encode-ahead.

Oracle: numpy's `argmax` of the row widened to float64, which is exactly what the CPU sampler
takes at temperature 0 (sampler.sample_token); the kernel must return the same id, bit for bit
(tolerance: exact - it is a selection, no arithmetic), on lavapipe and on SwiftShader (Chromium,
marked browser + slow). Rows include ties (lowest id must win),
-inf, +inf, -0 vs +0, NaN (numpy returns the first NaN's id), awkward lengths (fewer chunks than
lanes, a partial last round of unrolled loads: 5003), and row 1, so the row starts inside a
16-byte chunk (7, 257, 1001, 5003 values: f32 and f16 alike).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from webllm_py.codegen import build
from webllm_py.codegen.argmax import ArgmaxKey
from webllm_py.codegen.runner import has_f16
from webllm_py.testing.browser import webgpu_browser  # noqa: F401
from webllm_py.testing.browser_kernels import emulator_runner  # noqa: F401  (lavapipe, and SwiftShader [browser, slow])
from test_browser import bundles, native, server  # noqa: F401  (module fixtures: tiny bundles served, native engines)
from webllm_py.runtime.gpu_sampling import full_logits_needs, gpu_argmax_ok
from webllm_py.runtime.request import Request
from webllm_py.runtime.sampler import Sampler, SamplingParams

NP = {"f32": np.float32, "f16": np.float16}
UINT = {"f32": np.uint32, "f16": np.uint16}


def _rows(act: str, cols: int, case: str) -> np.ndarray:
    """Two rows of `cols` logits shaped by `case`; the kernel reduces row 1 (row 0 is a decoy
    whose maximum would win if the kernel read the wrong row)."""
    rng = np.random.default_rng(zlib.crc32(repr((act, cols, case)).encode()))
    x = rng.standard_normal((2, cols)).astype(NP[act])
    x[0, :] = 100.0
    r = x[1]
    if case == "ties":  # few distinct values: many ids share the maximum
        r[:] = rng.integers(-3, 4, cols).astype(NP[act])
    elif case == "neg_inf":  # a grammar-masked row: all -inf but a few
        r[:] = -np.inf
        r[rng.choice(cols, 3, replace=False)] = -5.0
    elif case == "all_neg_inf":  # every id -inf: argmax is id 0
        r[:] = -np.inf
    elif case == "zeros":  # -0 and +0 are equal: the lowest id of either wins
        r[:] = -1.0
        r[[cols // 3, cols // 2]] = [-0.0, 0.0]
    elif case == "pos_inf":
        r[[cols - 1, cols // 2]] = np.inf
    elif case == "nan":  # numpy: the first NaN wins over everything, inf included
        r[[cols - 2, cols // 2]] = np.nan
        r[1] = np.inf
    return x


CASES = ["random", "ties", "neg_inf", "all_neg_inf", "zeros", "pos_inf", "nan"]


@pytest.mark.parametrize("act", ["f32", "f16"])
@pytest.mark.parametrize("cols,case", [(49152, c) for c in CASES]
                         + [(5003, "ties"), (1001, "ties"), (7, "random"), (257, "nan")])
def test_argmax_kernel_matches_numpy(emulator_runner, act, cols, case):
    runner = emulator_runner
    if act == "f16" and not has_f16(runner.device):
        pytest.skip("adapter lacks shader-f16 (SwiftShader): the f16 variant declares f16 aliases")
    x = _rows(act, cols, case)
    want = int(np.argmax(x[1].astype(np.float64)))
    words = np.frombuffer(x.tobytes() + b"\0" * (-x.nbytes % 4), dtype=np.uint32)
    sentinel = np.array([0xDEADBEEF, 0xDEADBEEF, 0xDEADBEEF, 0xDEADBEEF], dtype=np.uint32)
    # the runner fills the uniform with [n, p, 0, 0]: n = cols, p = the row
    got = runner.run(build(ArgmaxKey(act)), {"logits": words, "out": sentinel}, n=cols, p=1)["out"]
    assert int(got[0]) == want, (case, int(got[0]), want)
    assert (got[1:] == 0xDEADBEEF).all()  # writes only its one word


def test_argmax_key_checks():
    with pytest.raises(ValueError, match="power of two"):
        build(ArgmaxKey("f32", wg=96))
    with pytest.raises(ValueError, match="act must be"):
        build(ArgmaxKey("bf16"))


# -- the one decision: greedy only, nothing else reading the logits ------------------------------

GREEDY = {"temperature": 0}
# every request option that needs the full row (the validated field it sets -> FULL_LOGITS_NEEDS name)
NEEDS_LOGITS = [
    ({"temperature": 0.7}, "temperature > 0"),
    ({"logprobs": True}, "logprobs"),  # chat
    ({"logprobs": True, "top_logprobs": 3}, "logprobs"),  # chat
    ({"logprobs": 0}, "logprobs"),  # completions: logprobs of the chosen token only
    ({"logprobs": 2}, "logprobs"),
    ({"logit_bias": {"5": 1.0}}, "logit_bias"),
    ({"repetition_penalty": 1.1}, "repetition_penalty"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": -0.5}, "presence_penalty"),
]
# options that leave the greedy token argmax(logits): the sampler returns at temperature 0 before
# top_p / top_k / min_p (sampler.sample_token); stop, n, seed, max_tokens act on text / choices
KEEPS_GREEDY = [{"top_p": 0.5}, {"top_k": 3}, {"min_p": 0.3}, {"stop": ["x"]}, {"n": 2}, {"seed": 7},
                {"max_tokens": 4}]


def _req(params: dict, chat: bool = False) -> Request:
    from webllm_py.runtime.request import validate_request

    return validate_request([1, 2, 3], {**GREEDY, **params}, chat=chat, generation={}, vocab_size=300,
                            context_window=64, model_name="m")


class _WithArgmax:
    def forward_argmax(self, ids):  # pragma: no cover - never called
        raise AssertionError


@pytest.mark.parametrize("params,need", NEEDS_LOGITS)
def test_each_option_needing_logits_turns_gpu_argmax_off(params, need):
    assert full_logits_needs(_req({})) == [] and gpu_argmax_ok(_req({}), _WithArgmax())
    req = _req(params, chat=params.get("logprobs") is True)
    assert full_logits_needs(req) == [need]
    assert not gpu_argmax_ok(req, _WithArgmax())


def test_grammar_and_model_without_argmax_turn_it_off():
    req = _req({})
    req.grammar = object()  # response_format / forced tool calls (the engine compiles it after validation)
    assert full_logits_needs(req) == ["grammar (response_format / tool calls)"]
    assert not gpu_argmax_ok(_req({}), object())  # the reference backend has no forward_argmax


@pytest.mark.parametrize("params", KEEPS_GREEDY)
def test_options_that_keep_the_greedy_token(params):
    req = _req(params)
    assert full_logits_needs(req) == []
    # and the CPU sampler indeed ignores them at temperature 0: its token is argmax of the row
    rng = np.random.default_rng(3)
    for _ in range(20):
        row = rng.integers(-4, 4, 300).astype(np.float32)  # ties
        tok, _ = Sampler(req.sampling, req.seed).sample(row)
        assert tok == int(np.argmax(row))


def test_table_covers_every_sampling_input():
    """A new SamplingParams field must be classified: in FULL_LOGITS_NEEDS or known harmless."""
    from dataclasses import fields

    from webllm_py.runtime.gpu_sampling import FULL_LOGITS_NEEDS

    harmless = {"top_p", "top_k", "min_p"}
    covered = {name.split(" ")[0] for name in FULL_LOGITS_NEEDS}
    assert {f.name for f in fields(SamplingParams)} <= covered | harmless


# -- natively: whole generations, and encode-ahead ---------------------------------------------

PROMPT = [(5 * i + 7) % 280 + 2 for i in range(21)]  # crosses the 16-token prefill chunk


@pytest.mark.parametrize("precision", ["f32", "f16"])
def test_greedy_generation_with_gpu_argmax_equals_cpu_path(precision, tiny_bundles, adapter, monkeypatch):
    """The engine's greedy completion with tokens argmax'd on the GPU equals the CPU sampler's
    (exact: same logits, same selection rule), and the GPU path is really taken."""
    import webllm_py
    from webllm_py.runtime import engine as engine_mod, generation

    if precision == "f16" and "shader-f16" not in adapter.features:
        pytest.skip("adapter lacks shader-f16")
    model = webllm_py.load(tiny_bundles("llama", "q4"), backend="native", precision=precision, adapter=adapter)
    eng = engine_mod.Engine(model)
    calls = []
    real = model.forward_argmax
    monkeypatch.setattr(model, "forward_argmax", lambda ids: calls.append(1) or real(ids))
    req = dict(prompt=PROMPT, max_tokens=24, temperature=0, ignore_eos=True)
    gpu = eng.completions.create(**req)
    assert len(calls) == 23  # every token after the prefill's first
    with_logprobs = eng.completions.create(**req, logprobs=1)
    assert len(calls) == 23  # logprobs read the row: the CPU path
    monkeypatch.setattr(generation, "gpu_argmax_ok", lambda r, m: False)  # the loop lives in generation.py
    cpu = eng.completions.create(**req)
    assert gpu.choices[0].text == cpu.choices[0].text == with_logprobs.choices[0].text
    assert gpu.usage.completion_tokens == 24
    # and the model's own greedy loop (numpy argmax of every read-back row) gives the same ids
    expect = model.generate(PROMPT, max_new_tokens=24)
    model.reset()
    got = [int(np.argmax(model.forward(PROMPT)))]
    while len(got) < len(expect):
        got.append(model.forward_argmax([got[-1]]))
    assert got == expect


def test_encode_ahead_is_bit_identical_and_used(tiny_bundles, adapter):
    """Logits of prefill + decode steps (with a truncate in between: a miss) are bit-identical
    whether each decode step submits the buffer recorded ahead or records its own."""
    import webllm_py

    def run(model):
        model.reset()
        rows = [model.forward(PROMPT)] + [model.forward([t]) for t in PROMPT[:6]]
        model.truncate(model.position - 3)
        rows += [model.forward([t]) for t in PROMPT[6:9]]
        return np.stack(rows)

    model = webllm_py.load(tiny_bundles("llama", "q4"), backend="native", precision="f32", adapter=adapter)
    ahead = run(model)
    assert model._ahead.hits == 8 and model._ahead.misses == 3  # prefill chunks, the step after truncate
    model._ahead.prepare = lambda key: None  # record every step at its own time
    assert np.array_equal(run(model), ahead)
    with pytest.raises(ValueError, match="one token"):
        model.forward_argmax([1, 2])


# -- the browser runtime's copies ----------------------------------------------------------------

def test_js_wgsl_module_is_current():
    """web/src/gpu_sampling_wgsl.js is the generated copy of both argmax variants (regenerate with
    webllm_py.codegen.argmax.write_js_module() after editing the template)."""
    from pathlib import Path

    from webllm_py.codegen.argmax import JS_MODULE, js_module

    assert (Path(__file__).resolve().parents[1] / JS_MODULE).read_text(encoding="utf-8") == js_module()


def test_js_decision_table_names_the_same_needs():
    """web/src/gpu_sampling.js's FULL_LOGITS_NEEDS lists the same needs in the same order
    (web/test/gpu_sampling.test.js checks each against request.js's validated fields)."""
    import re
    from pathlib import Path

    from webllm_py.runtime.gpu_sampling import FULL_LOGITS_NEEDS

    js = (Path(__file__).resolve().parents[1] / "web/src/gpu_sampling.js").read_text(encoding="utf-8")
    table = js[js.index("export const FULL_LOGITS_NEEDS"):]
    table = table[: table.index("];")]
    assert re.findall(r'\["([^"]+)", \(r\)', table) == list(FULL_LOGITS_NEEDS)


# -- the browser runtime in Chromium (SwiftShader) ----------------------------------------------

@pytest.mark.browser
@pytest.mark.slow
def test_browser_runtime_argmax_and_encode_ahead(webgpu_browser, server, bundles, native):
    """In Chromium, the runtime's GPU argmax compiled (not the read-back fallback) and gives
    argmax(forward()) at every decode step; logits are bit-identical with encode-ahead off; the
    engine's greedy text equals native's (both on the GPU argmax) and recorded-ahead steps were used."""
    from test_browser import CREATE, _eval, _open

    page = _open(webgpu_browser, server)
    _eval(webgpu_browser, page, CREATE, [server.url("/b/q4/"), {"precision": "f32"}])
    got = _eval(webgpu_browser, page, """async (ids) => {
      const m = engine.model;
      const run = async (pick) => {
        m.reset();
        const rows = [Array.from(await m.forward(ids))];
        let tok = 0, toks = [];
        for (let i = 0; i < 6; i++) {
          if (pick) toks.push(tok = await m.forwardArgmax([ids[i]]));
          else rows.push(Array.from(await m.forward([ids[i]])));
        }
        return { rows, toks };
      };
      const compiled = m._argmax !== null;
      const ahead = await run(false);
      const hits = m._ahead.hits;
      const picked = (await run(true)).toks;
      const prepare = m._ahead.prepare;
      m._ahead.prepare = () => {};
      const own = await run(false);
      m._ahead.prepare = prepare;
      const r = await engine.completions.create({ prompt: "Once upon a time", max_tokens: 10, temperature: 0, ignore_eos: true });
      return { compiled, hits, ahead: ahead.rows, own: own.rows, picked, text: r.choices[0].text };
    }""", PROMPT)
    assert got["compiled"], "the argmax kernel did not compile in Chromium: forwardArgmax fell back to the row"
    assert got["hits"] >= 5
    assert got["ahead"] == got["own"]  # bit-identical: JSON floats round-trip exactly
    ahead = np.array(got["ahead"])
    assert got["picked"] == [int(np.argmax(r)) for r in ahead[1:]]
    _, engine = native(bundles["q4"])
    want = engine.completions.create(prompt="Once upon a time", max_tokens=10, temperature=0, ignore_eos=True)
    assert got["text"] == want.choices[0].text
    page.context.close()
