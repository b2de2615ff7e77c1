"""GGUF block formats kept bit for bit (q5, q5a, q2k..q6k: quant/kquant.py), their WGSL dequantization
(wgsl_templates/_dequant.wgsl) and the CPU-set matmul / embedding kernels that read them.

References, none written here: gguf.quants.dequantize (llama.cpp's own Python package) for the
weights, gguf.quants.quantize for q5 / q5a from float, ir/ops.py's linear / embedding / rms_norm /
silu_mul for the kernels.

| what                                   | tolerance        | why                                                    |
|----------------------------------------|------------------|--------------------------------------------------------|
| numpy dequantize vs gguf               | 0 (f32 bits)     | same products in the same order; the repack is lossless |
| repack round trip (GGUF bytes)         | 0 (bytes)        | a bijection                                            |
| WGSL dq8 (8 weights of a row)          | 1e-6 normalized  | a*q + b may be one fma (one rounding fewer than numpy)  |
| WGSL dq_dot (8 products)               | 1e-5 normalized  | f32 sum of 8 products in another order                 |
| matmul (decode tn=1, prefill tn>1)     | 1e-4 normalized  | f32 sums of <= 768 products in another order than numpy |
| embedding                              | 1e-6 normalized  | one dequantized weight, fma as dq8                     |
| native f32 / gpu / idot vs reference   | 1e-4 / 2e-3      | f32 sums; gpu: f16x2 KV cache (k, v rounded to f16);   |
|   (synthetic GGUF, float q5a build)    |   / 2e-3         | idot: a converted q4 tensor reads 9-bit packed x       |
(SmolLM2 requantized by llama.cpp vs transformers, 2e-3 max|logit|, and its perplexity vs the f32
build, 0.5 %: bench/kquant_real.py, which needs llama-cpp-python.)
The SwiftShader test runs the same kernels and tolerances through Chromium/Tint (browser, slow).
"""

from __future__ import annotations

import numpy as np
import pytest

from gguf_files import add_spelled_vocab, finish_gguf
from test_gpu_gemv import DQ_PROBE_HEAD
from test_kernels import EXTRA, check, padded, rand, ref_op, rng_for, runner, same_bits, sentinel  # noqa: F401
from webllm_py.codegen import dequant
from webllm_py.codegen.kernels import STEP, EmbeddingKey, Kernel, MatmulKey, _env, build
from webllm_py.quant import kquant
from webllm_py.quant.formats import FORMATS, dequantize, part_shapes, quantize
from webllm_py.testing.browser_kernels import browser_kernel_runner  # noqa: F401

gguf = pytest.importorskip("gguf")
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

KFORMATS = list(kquant.SPECS)
# byte offsets of each GGUF block's f16 fields (d, dmin / m): set to finite values, the rest random
F16_AT = {"q5": [0], "q5a": [0, 2], "q2k": [80, 82], "q3k": [108], "q4k": [0, 2], "q5k": [0, 2], "q6k": [208]}


def gguf_blocks(rng, fmt: str, rows: int, cols: int, d_scale: float = 1e-2) -> np.ndarray:
    """Random GGUF bytes of `fmt`'s type for a (rows, cols) tensor: every code, scale and bit pattern
    is possible; only the f16 super-scales are kept finite (normal(0, d_scale))."""
    s = kquant.SPECS[fmt]
    raw = rng.integers(0, 256, (rows, cols // s.block, s.block_bytes), dtype=np.uint8)
    for o in F16_AT[fmt]:
        raw[..., o:o + 2] = rng.normal(0, d_scale, raw.shape[:2]).astype(np.float16)[..., None].view(np.uint8)
    return raw.reshape(rows, -1)


def gguf_type(fmt: str):
    return gguf.GGMLQuantizationType[kquant.SPECS[fmt].gguf]


def kweight(rng, fmt, rows, cols):
    """(kernel arrays, reference f32 weights): random GGUF blocks, the reference dequantized by gguf."""
    raw = gguf_blocks(rng, fmt, rows, cols)
    parts = kquant.from_gguf(fmt, raw, rows, cols)
    return {"w": parts["data"], "scales": parts["scales"]}, gguf_dequantize(raw, gguf_type(fmt)).reshape(rows, cols)


# -- numpy: bit-exact against gguf ----------------------------------------------------

@pytest.mark.parametrize("fmt", KFORMATS)
def test_dequantize_equals_gguf_bits(fmt):
    """Random blocks of every type: our planes dequantize to gguf's f32 bits, and repack back to the same bytes."""
    s = kquant.SPECS[fmt]
    rng = rng_for("kq-np", fmt)
    rows, cols = 7, s.block * 5
    raw = gguf_blocks(rng, fmt, rows, cols, d_scale=10.0)  # wide range: subnormal to large products
    parts = kquant.from_gguf(fmt, raw, rows, cols)
    for name, (dtype, shape) in part_shapes(fmt, (rows, cols)).items():
        assert parts[name].shape == shape and parts[name].dtype == {"u32": np.uint32, "f16": np.float16}[dtype]
        assert parts[name].ctypes.data % 4 == 0 or dtype == "f16"
    ref = gguf_dequantize(raw, gguf_type(fmt)).reshape(rows, cols)
    got = dequantize(parts, fmt, (rows, cols))
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), f"{fmt}: f32 bits differ from gguf"
    assert np.array_equal(kquant.to_gguf(parts, fmt, rows, cols), raw), f"{fmt}: repack is not lossless"


@pytest.mark.parametrize("fmt", ["q5", "q5a"])
def test_q5_from_float_is_ggufs_quantizer(fmt):
    """q5 / q5a made from float weights are gguf's Q5_0 / Q5_1 blocks (awkward cols: zero-padded last block)."""
    rng = rng_for("kq-q5", fmt)
    w = rng.standard_normal((5, 70)).astype(np.float32)
    got = dequantize(quantize(w, fmt), fmt, w.shape)
    pad = np.zeros((5, 96), np.float32)
    pad[:, :70] = w
    ref = gguf_dequantize(gguf_quantize(pad, gguf_type(fmt)), gguf_type(fmt)).reshape(5, 96)[:, :70]
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("fmt", ["q2k", "q3k", "q4k", "q5k", "q6k"])
def test_k_formats_refuse_float_weights(fmt):
    with pytest.raises(ValueError, match=f"{fmt} holds a GGUF file's .* blocks .* choose q4"):
        quantize(np.ones((2, 256), np.float32), fmt)


def test_whole_blocks_only():
    with pytest.raises(ValueError, match="q4k .Q4_K. needs rows of whole 256-column blocks; a row has 320"):
        kquant.from_gguf("q4k", np.zeros(144 * 2, np.uint8), 1, 320)


def test_bytes_per_weight_is_the_gguf_size_rounded_to_words():
    """Stored size per block: GGUF's block bytes plus at most 8 (f16 d padded to a word, 12 packed scale bytes unpacked to 16)."""
    from webllm_py.quant.formats import bytes_per_weight

    for fmt, s in kquant.SPECS.items():
        gguf_bpw = s.block_bytes / s.block
        assert gguf_bpw <= bytes_per_weight(fmt) <= gguf_bpw + 8 / s.block + 1e-12, fmt
    assert all(f in FORMATS for f in KFORMATS)


# -- WGSL: _dequant.wgsl's dq8 / dq_dot ------------------------------------------------

_PROBE = DQ_PROBE_HEAD + """\

// row gid.y, chunk gid.x: dq8 and dq_dot of columns 8i .. 8i+7
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let row = gid.y;
  let i = gid.x;
  if (i < {{ c8 }}u) {
    let m = dq8(row, i);
    out8[(row * {{ c8 }}u + i) * 2u] = m[0];
    out8[(row * {{ c8 }}u + i) * 2u + 1u] = m[1];
    outd[row * {{ c8 }}u + i] = dq_dot(row, i, array<vec4<f32>, 2>(x[2u * i], x[2u * i + 1u]));
  }
}
"""


@pytest.mark.parametrize("fmt", KFORMATS)
def test_dequant_library(runner, fmt):
    """dq8 of every 8-column chunk and dq_dot of every chunk against gguf's dequantized weights
    (2 blocks per row: block indexing past the first is exercised)."""
    rows, cols = 3, 2 * kquant.SPECS[fmt].block
    rng = rng_for("kq-dq", fmt)
    arrays, wd = kweight(rng, fmt, rows, cols)
    assert dequant.block_cols(fmt) == 8
    c8 = cols // 8
    x = rng.standard_normal(cols).astype(np.float32)
    decls = dequant.weight_decls(fmt, rows, cols) + [
        ("x", "read", "array<vec4<f32>>", ""), ("out8", "read_write", "array<vec4<f32>>", ""),
        ("outd", "read_write", "array<f32>", ""), STEP]
    wgsl = _env().from_string(_PROBE).render(decls=decls, fmt=fmt, cols=cols, c8=c8)
    k = Kernel(key=None, name=f"kq_probe_{fmt}", wgsl=wgsl, bindings=tuple((d[0], d[1]) for d in decls),
               workgroup_size=(64, 1, 1), dispatch=(str(-(-c8 // 64)), str(rows), "1"))
    got = runner.run(k, {**arrays, "x": x, "out8": np.zeros((rows, cols), np.float32),
                         "outd": np.zeros((rows, c8), np.float32)}, 1)
    check(got["out8"], wd, 1e-6, f"dq8 {fmt}")
    check(got["outd"], (wd * x).reshape(rows, c8, 8).sum(-1), 1e-5, f"dq_dot {fmt}")


# -- CPU-set kernels: matmul (decode and prefill forms), fused forms, embedding ----------

@pytest.mark.parametrize("fmt", KFORMATS)
@pytest.mark.parametrize("cols", [256, 768])
@pytest.mark.parametrize("n,tn,rpi", [(1, 1, 4), (5, 4, 2)])
def test_matmul(runner, fmt, cols, n, tn, rpi):
    """Decode form (n 1, tn 1) and prefill form (n 5 in tiles of tn 4: a partial tile), rows not a
    multiple of the workgroup's rows, x padded with NaN rows past n."""
    rng = rng_for("kq-mm", fmt, cols, n, tn)
    rows = 37
    arrays, wd = kweight(rng, fmt, rows, cols)
    x = rand(rng, (n, cols), "f32")
    out = sentinel((n + EXTRA, rows), "f32")
    got = runner.run(build(MatmulKey("f32", fmt, rows, cols, tn=tn, rpi=rpi, wg=8)),
                     {**arrays, "x": padded(x, "f32"), "out": out}, n)["out"]
    check(got[:n], ref_op("linear", [x, wd], n), 1e-4, f"matmul {fmt}")
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("fmt", ["q4k", "q6k"])
def test_matmul_fused(runner, fmt):
    """The fusions reach the dq8 path like any format: RMSNorm prologue + SiLU gate epilogue + bias."""
    rng = rng_for("kq-fused", fmt)
    rows, cols, n = 20, 256, 3
    arrays, wd = kweight(rng, fmt, 2 * rows, cols)
    arrays["norm_w"] = (rng.standard_normal(cols) * 0.5 + 1).astype(np.float32)
    arrays["bias"] = rng.standard_normal(2 * rows).astype(np.float32)
    x = rand(rng, (n, cols), "f32", 2.0)
    xin = ref_op("rms_norm", [x, arrays["norm_w"]], n, eps=1e-5)
    gate = ref_op("linear", [xin, wd[:rows], arrays["bias"][:rows]], n)
    up = ref_op("linear", [xin, wd[rows:], arrays["bias"][rows:]], n)
    key = MatmulKey("f32", fmt, rows, cols, bias=True, tn=2, rpi=2, wg=8, norm=True, norm_eps=1e-5, epilogue="silu_mul")
    out = sentinel((n + EXTRA, rows), "f32")
    got = runner.run(build(key), {**arrays, "x": padded(x, "f32"), "out": out}, n)["out"]
    check(got[:n], ref_op("silu_mul", [gate, up], n), 1e-4, key.name)
    same_bits(got[n:], out[n:], "sentinel rows")


@pytest.mark.parametrize("fmt", KFORMATS)
def test_embedding(runner, fmt):
    rng = rng_for("kq-emb", fmt)
    vocab, hidden, n = 20, 2 * kquant.SPECS[fmt].block, 4
    arrays, table = kweight(rng, fmt, vocab, hidden)
    ids = rng.integers(0, vocab, n).astype(np.int32)
    ids[0] = vocab - 1
    out = sentinel((n + EXTRA, hidden), "f32")
    got = runner.run(build(EmbeddingKey("f32", fmt, vocab, hidden)), {**arrays, "ids": ids, "out": out}, n)["out"]
    check(got[:n], ref_op("embedding", [ids, table], n), 1e-6, f"embedding {fmt}")
    same_bits(got[n:], out[n:], "sentinel rows")


# -- GGUF import: a synthetic llama with every block type (and one no format holds) ----------

H, I, NH, NKV, HD, V = 256, 512, 4, 2, 64, 256
# GGUF type of each 2-D tensor: q/k/v of layer 0 in three types (they stay separate linears),
# layer 1's in one (fused q/k/v with split outputs); gate/up share a type (fused SiLU gate)
TINY_TYPES = {"token_embd": "Q6_K", "output": "Q5_K",
              "blk.0.attn_q": "Q4_K", "blk.0.attn_k": "Q4_K", "blk.0.attn_v": "Q3_K", "blk.0.attn_output": "Q2_K",
              "blk.0.ffn_gate": "Q5_0", "blk.0.ffn_up": "Q5_0", "blk.0.ffn_down": "IQ4_NL",
              "blk.1.attn_q": "Q6_K", "blk.1.attn_k": "Q6_K", "blk.1.attn_v": "Q6_K", "blk.1.attn_output": "Q5_1",
              "blk.1.ffn_gate": "Q4_K", "blk.1.ffn_up": "Q4_K", "blk.1.ffn_down": "Q5_K"}


def _random_blocks(rng, qtype: str, rows: int, cols: int, d: float = 2e-3) -> np.ndarray:
    """Random GGUF blocks of `qtype` (its f16 scales finite; IQ4_NL: d first)."""
    fmt = kquant.BY_GGUF.get(qtype)
    if fmt:
        return gguf_blocks(rng, fmt, rows, cols, d_scale=d)
    block, nbytes = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[qtype]]
    raw = rng.integers(0, 256, (rows, cols // block, nbytes), dtype=np.uint8)
    raw[..., 0:2] = rng.normal(0, d * 10, raw.shape[:2]).astype(np.float16)[..., None].view(np.uint8)
    return raw.reshape(rows, -1)


@pytest.fixture(scope="module")
def tiny_kquant_gguf(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("kgguf") / "tiny-kquant.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for add, v in [("block_count", 2), ("context_length", 256), ("embedding_length", H), ("feed_forward_length", I),
                   ("head_count", NH), ("head_count_kv", NKV), ("rope_dimension_count", HD),
                   ("layer_norm_rms_eps", 1e-6), ("vocab_size", V)]:
        getattr(w, f"add_{add}")(v)
    add_spelled_vocab(w, V)
    shapes = {"token_embd": (V, H), "output": (V, H), "attn_q": (NH * HD, H), "attn_k": (NKV * HD, H),
              "attn_v": (NKV * HD, H), "attn_output": (H, NH * HD), "ffn_gate": (I, H), "ffn_up": (I, H),
              "ffn_down": (H, I)}
    for name, qtype in TINY_TYPES.items():
        rows, cols = shapes[name.split(".")[-1]]
        w.add_tensor(f"{name}.weight", _random_blocks(rng, qtype, rows, cols),
                     raw_dtype=gguf.GGMLQuantizationType[qtype])
    for name in ["output_norm"] + [f"blk.{i}.{n}" for i in range(2) for n in ("attn_norm", "ffn_norm")]:
        w.add_tensor(f"{name}.weight", (1 + 0.1 * rng.standard_normal(H)).astype(np.float32))
    finish_gguf(w)
    return path


def test_gguf_import_keeps_blocks(tiny_kquant_gguf):
    """stored_parts of every kept type dequantizes to read()'s values bit for bit (q/k rows un-permuted
    like read()'s); a type no format holds (IQ4_NL) is not kept."""
    from webllm_py.models.gguf_source import GGUFSource

    src = GGUFSource(tiny_kquant_gguf)
    for name in src.tensor_names():
        kind = src.gguf_tensor_type(name)
        stored = src.stored_parts(name)
        if kind not in kquant.BY_GGUF:
            assert stored is None or kind in ("Q4_0", "Q4_1", "Q8_0"), (name, kind)
            continue
        fmt, parts = stored
        assert fmt == kquant.BY_GGUF[kind]
        w = src.read(name)
        assert np.array_equal(dequantize(parts, fmt, w.shape).view(np.uint32), w.view(np.uint32)), name


def test_gguf_build_keeps_blocks_and_names_conversions(tiny_kquant_gguf, tmp_path, capfd):
    """The default build keeps every block type (error 0), prints the one IQ4_NL tensor it converted
    with its measured error, and runs on the native backend like the reference backend: the CPU
    sets' dq8 matmuls (incl. the fused q6k q/k/v splits and q5 / q4k SiLU gates; q/k/v of three
    types stay apart) and the GPU set's gemv / gemm; tolerances by set below (f32: 1e-4 of
    max|logit|, summation order)."""
    import json

    import webllm_py

    b = webllm_py.build(tiny_kquant_gguf, tmp_path / "b", progress=False)
    err = capfd.readouterr().err
    assert "note: blk.0.ffn_down.weight: GGUF type IQ4_NL has no bundle format; converted to q4 (max |err|" in err
    weights = json.loads((b / "manifest.json").read_text())["weights"]
    kept = {n: w for n, w in weights.items() if n != "model.layers.0.mlp.down_proj.weight"}
    assert {w["format"] for w in kept.values()} == {"f32", *kquant.SPECS}
    assert all(w["error"]["max_abs"] == 0.0 for w in kept.values())
    assert "model.layers.1.self_attn.q_proj+k_proj+v_proj.weight" in weights
    assert "model.layers.0.self_attn.q_proj.weight" in weights  # Q4_K, Q4_K, Q3_K: not stacked
    ids = [1, 5, 9, 200, 3, 77]
    ref = webllm_py.load(b, backend="reference").logits(ids)
    # CPU sets (idot: block formats read x unpacked, but the converted q4 down_proj reads it packed:
    # activations rounded to 9-bit integers, hence 2e-3) and the GPU set's gemv / gemm (its KV cache
    # is f16x2: k/v rounded to f16, 2^-11 relative, hence 2e-3; measured 5.5e-4)
    for precision, tol in (("f32", 1e-4), ("idot", 2e-3), ("gpu", 2e-3)):
        got = webllm_py.load(b, backend="native", precision=precision).logits(ids)
        check(got, ref, tol, f"native {precision} vs reference")


# A real file requantized by llama.cpp's own quantizer (SmolLM2-135M Q4_K_M / Q5_K_M / Q2_K vs
# transformers on the same GGUF, and the perplexity of the f32 build) needs llama-cpp-python, which
# the test profile does not install: bench/kquant_real.py runs it (bench profile). The real K-quant
# file the tests build is Gemma 3 270M Q4_K_M (tests/test_gemma3_270m.py).


def test_js_manifest_reader_knows_the_parts():
    """web/src/manifest_weights.js expects the same part dtypes and shapes as quant.formats.part_shapes
    (the browser runtime would refuse a bundle holding these formats otherwise)."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    src = Path(__file__).resolve().parents[1] / "web" / "src" / "manifest_weights.js"
    shapes = [(37, 512), (3, 70)]
    cases = [(f, s) for f in FORMATS for s in shapes if not (FORMATS[f].block and FORMATS[f].block.sub and s[1] % 256)]
    script = (f"import {{ expectedParts }} from {json.dumps(src.as_uri())};"
              f"console.log(JSON.stringify({json.dumps(cases)}.map(([f, s]) => expectedParts(f, s))));")
    out = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, check=True)
    got = json.loads(out.stdout)
    for (fmt, shape), js in zip(cases, got):
        want = {k: [d, list(s)] for k, (d, s) in part_shapes(fmt, shape).items()}
        assert js == want, (fmt, shape)


def test_float_model_builds(tmp_path):
    """From float weights: q5a builds (gguf's Q5_1 quantizer; rows of 172 columns: a padded last block)
    and runs natively on a CPU and the GPU set like the reference backend; a K format is one
    BuildError naming the tensor and the fix."""
    import webllm_py
    from conftest import shared_model
    from webllm_py.errors import BuildError

    src = shared_model("stories260k")
    b = webllm_py.build(src, tmp_path / "q5a", quantization="q5a", progress=False)
    ids = [1, 200, 300, 45, 7]
    ref = webllm_py.load(b, backend="reference").logits(ids)
    for precision, tol in (("f32", 1e-4), ("gpu", 2e-3)):  # gpu: f16x2 KV cache (measured 3.4e-4)
        check(webllm_py.load(b, backend="native", precision=precision).logits(ids), ref, tol, f"q5a native {precision}")
    with pytest.raises(BuildError, match=r"tensor model\.embed_tokens\.weight: q4k holds a GGUF file's Q4_K blocks.*choose q4"):
        webllm_py.build(src, tmp_path / "q4k", quantization="q4k", progress=False)


@pytest.mark.parametrize("fmt", ["q5", "q5a"])
@pytest.mark.parametrize("n,tn", [(1, 1), (5, 4)])
def test_matmul_q5_from_float_awkward_cols(runner, fmt, n, tn):
    """q5 / q5a made from float rows of 70 columns (the last block zero-padded, the last 8-column chunk
    partial: x masked there): matmul and embedding against gguf's quantize + dequantize (1e-4 / 1e-6)."""
    rng = rng_for("kq-q5awk", fmt, n)
    rows, cols = 37, 70
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    parts = quantize(w, fmt)
    pad = np.zeros((rows, 96), np.float32)
    pad[:, :cols] = w
    wd = gguf_dequantize(gguf_quantize(pad, gguf_type(fmt)), gguf_type(fmt)).reshape(rows, 96)[:, :cols]
    arrays = {"w": parts["data"], "scales": parts["scales"]}
    x = rand(rng, (n, cols), "f32")
    out = sentinel((n + EXTRA, rows), "f32")
    got = runner.run(build(MatmulKey("f32", fmt, rows, cols, tn=tn, rpi=2, wg=8)),
                     {**arrays, "x": padded(x, "f32"), "out": out}, n)["out"]
    check(got[:n], ref_op("linear", [x, wd], n), 1e-4, f"matmul {fmt} cols {cols}")
    same_bits(got[n:], out[n:], "sentinel rows")
    ids = np.array([0, rows - 1, 3][:n], np.int32)
    emb = runner.run(build(EmbeddingKey("f32", fmt, rows, cols)),
                     {**arrays, "ids": ids, "out": sentinel((len(ids), cols), "f32")}, len(ids))["out"]
    check(emb, ref_op("embedding", [ids, wd], len(ids)), 1e-6, f"embedding {fmt} cols {cols}")


@pytest.mark.browser
@pytest.mark.slow
def test_kernels_on_swiftshader(browser_kernel_runner):
    """The same dq8 matmul (decode + prefill forms) and embedding WGSL through Chromium's Tint on
    SwiftShader (what the browser runtime compiles on a software adapter), every block format, against
    gguf's dequantization (tolerances as on lavapipe)."""
    for fmt in KFORMATS:
        rng = rng_for("kq-swiftshader", fmt)
        rows, cols = 37, 2 * kquant.SPECS[fmt].block if fmt in ("q5", "q5a") else 256
        arrays, wd = kweight(rng, fmt, rows, cols)
        for n, tn in ((1, 1), (5, 4)):
            x = rand(rng, (n, cols), "f32")
            out = sentinel((n + EXTRA, rows), "f32")
            got = browser_kernel_runner.run(build(MatmulKey("f32", fmt, rows, cols, tn=tn, rpi=2, wg=8)),
                                            {**arrays, "x": padded(x, "f32"), "out": out}, n)["out"]
            check(got[:n], ref_op("linear", [x, wd], n), 1e-4, f"swiftshader matmul {fmt} n {n}")
            same_bits(got[n:], out[n:], "sentinel rows")
        ids = np.array([0, rows - 1, 5], np.int32)
        emb = browser_kernel_runner.run(build(EmbeddingKey("f32", fmt, rows, cols)),
                                        {**arrays, "ids": ids, "out": sentinel((3, cols), "f32")}, 3)["out"]
        check(emb, ref_op("embedding", [ids, wd], 3), 1e-6, f"swiftshader embedding {fmt}")
