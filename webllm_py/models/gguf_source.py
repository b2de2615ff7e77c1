"""GGUFSource: a llama, gemma2, gemma3, phi3, qwen2 or qwen3 GGUF file presented as an HF model (a ModelSource).

The file is read with llama.cpp's own `gguf` package (GGUFReader, which memory-
maps it, and gguf.quants.dequantize); a model split by gguf-split (NAME-00001-of-0000N.gguf)
is read from all its splits, given any one of them (gguf_split.py). Tensors are dequantized one
at a time to float32 and renamed / re-laid-out to HF's LlamaForCausalLM conventions:

- GGUF lists dims fastest-first (ggml `ne`); numpy shapes are the reverse.
- convert_hf_to_gguf.py permutes q_proj / k_proj rows from HF's rotate_half
  layout into interleaved RoPE pairs; `read` undoes that (n_head for q,
  n_head_kv for k), so the weights match the original HF checkpoint.
- No `output.weight` tensor means the embeddings are tied.
- Per architecture (`GGUF_ARCHS`): the metadata key prefix, the tensor names, whether q/k
  rows were permuted (llama only; Gemma, phi3 and Qwen use NEOX-style rotate_half already), and Gemma's
  norms, which llama.cpp stores as 1 + w: `read` subtracts the 1 again, as transformers' GGUF
  loader does, so the tensors are the HF checkpoint's (the Gemma builder adds it back).
- Rope scaling (gguf_rope.py): llama3 from the rope_freqs tensor, linear and yarn from
  rope.scaling.*; phi3's longrope from its factor tensors (`_phi3_config`).
- Gemma's query_pre_attn_scalar is llama.cpp's rule, n_embd / n_head for the 27B models (block
  count 46 / 62) and head_dim otherwise (`_gemma_config`).

Quantized blocks are kept as they are (`stored_parts`) when a bundle format holds
the GGUF type exactly: Q4_0 -> q4, Q4_1 -> q4a, Q8_0 -> q8 (re-laid-out here) and
Q5_0, Q5_1, Q2_K..Q6_K -> q5, q5a, q2k..q6k (quant/kquant.py). Any other quantized
type (IQ*, TQ*, MXFP4, ...) is dequantized by the gguf package and quantized again
to the build's scheme; `conversion_note` names it, with the error measured against
the GGUF's values, for the writer to print.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import BuildError
from ..quant import kquant
from .gguf_rope import rope_scaling
from .gguf_split import SPLIT_KEYS, open_splits
from .gguf_tokenizer import build_tokenizer


# GGUF tensor name -> HF name ({i} is the layer index).
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
# Tensors that carry no weights of their own: rope_freqs holds Llama 3's rope
# scaling factors, turned back into config.rope_scaling.
_CONSUMED = {"rope_freqs.weight", "rope_factors_short.weight", "rope_factors_long.weight"}  # + phi3's longrope
# GGUF block types a bundle format holds exactly: type -> (format, bytes per block of 32)
_LOSSLESS = {"Q4_0": ("q4", 18), "Q4_1": ("q4a", 20), "Q8_0": ("q8", 34)}
# float types: read() converts them without loss to f32; every other type is a quantization
_FLOAT_TYPES = {"F32", "F16", "BF16", "F64"}
_LAYER_RE = re.compile(r"blk\.(\d+)\.(.+)")


def _llama_config(src: "GGUFSource") -> dict[str, Any]:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu"}


# The block count llama.cpp takes for the 27B model (llama-model.cpp's LLM_TYPE_27B per arch)
_GEMMA_27B_LAYERS = {"gemma2": 46, "gemma3": 62}


def _gemma_config(src: "GGUFSource") -> dict[str, Any]:
    """Gemma 2/3 fields. query_pre_attn_scalar, which no GGUF key holds, is llama.cpp's rule
    (llama-model.cpp, LLM_ARCH_GEMMA2 / GEMMA3): n_embd / n_head (integer division) for the 27B
    model, which llama.cpp recognizes by its block count (46 / 62), else head_dim; that is each real
    model's config value (27B: 144 / 168, the others: head_dim 256), where transformers' GGUF loader
    leaves its config class's 256. The local rope base (10000, which llama.cpp also fixes for
    gemma3) and the 2:1 / 6:1 layer pattern are the config classes' defaults."""
    gemma2 = src.arch == "gemma2"
    hidden, heads = src._int("embedding_length"), src._int("attention.head_count")
    is_27b = src._int("block_count") == _GEMMA_27B_LAYERS[src.arch]
    cfg: dict[str, Any] = {"architectures": ["Gemma2ForCausalLM" if gemma2 else "Gemma3ForCausalLM"],
                           "model_type": "gemma2" if gemma2 else "gemma3_text",
                           "hidden_activation": "gelu_pytorch_tanh",
                           "query_pre_attn_scalar": hidden // heads if is_27b else
                           src._int("attention.key_length", max(1, hidden // heads)),
                           "sliding_window": src._int("attention.sliding_window", 4096)}
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):  # llama.cpp writes gemma2's
        if f"{src.arch}.{key}" in src._meta:
            cfg[key] = src._num(key, 1.0)
    return cfg


# phi3: [q; k; v] in attn_qkv and [gate; up] in ffn_up, as the HF checkpoint stores them (not permuted)
_PHI3_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_qkv.weight": "self_attn.qkv_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_up.weight": "mlp.gate_up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _phi3_config(src: "GGUFSource") -> dict[str, Any]:
    """Phi-3 / Phi-3.5 / Phi-4-mini fields as convert_hf_to_gguf.py's Phi3MiniModel writes them:
    rope.dimension_count (partial rotary), rope.scaling.original_context_length (where longrope's
    long factors start), the longrope factors as the rope_factors_short / _long tensors with
    rope.scaling.attn_factor, and attention.sliding_window (0: none). transformers' GGUF loader
    reads none of these (it builds a full-rotary Phi3Config without rope scaling)."""
    hidden, heads = src._int("embedding_length"), src._int("attention.head_count")
    head_dim = src._int("attention.key_length", max(1, hidden // heads))
    sliding = src._meta.get("phi3.attention.sliding_window")
    cfg: dict[str, Any] = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_act": "silu",
                           "partial_rotary_factor": src._int("rope.dimension_count", head_dim) / head_dim,
                           "sliding_window": sliding or None, "rope_scaling": None}
    orig = src._int("rope.scaling.original_context_length", None)
    if orig is not None:
        cfg["original_max_position_embeddings"] = orig
    if "rope_factors_long.weight" in src._by_gguf:
        cfg["rope_scaling"] = {"rope_type": "longrope",
                               "short_factor": src._dequantize("rope_factors_short.weight").ravel().tolist(),
                               "long_factor": src._dequantize("rope_factors_long.weight").ravel().tolist(),
                               "attention_factor": src._num("rope.scaling.attn_factor", 1.0)}
    return cfg


def _qwen_config(src: "GGUFSource") -> dict[str, Any]:
    """Qwen2 / Qwen2.5 / Qwen3 as convert_hf_to_gguf.py's Qwen2Model / Qwen3Model write them: q/k rows
    not permuted (NEOX rope), qwen2's q/k/v biases (attention_bias follows attn_q.bias), qwen3's
    explicit head_dim as attention.key_length and attn_q_norm / attn_k_norm; no sliding window
    (llama.cpp has none for either)."""
    name = "Qwen2" if src.arch == "qwen2" else "Qwen3"
    return {"architectures": [f"{name}ForCausalLM"], "model_type": src.arch, "hidden_act": "silu",
            "use_sliding_window": False}


@dataclass(frozen=True)
class GGUFArch:
    """What differs between the GGUF architectures the importer reads."""

    config: Callable[["GGUFSource"], dict[str, Any]]  # config.json fields of this architecture
    layer_names: dict[str, str]  # GGUF per-layer tensor suffix -> HF name under model.layers.{i}
    permuted_qk: bool  # convert_hf_to_gguf.py permuted q/k rows into interleaved RoPE pairs
    norm_offset: float = 0.0  # the converter stored every *norm.weight as w + offset
    partial_rotary: bool = False  # rope.dimension_count may be below head_dim (the config says how)


_GEMMA_LAYER_NAMES = {**_LAYER_NAMES,
                      "post_attention_norm.weight": "post_attention_layernorm.weight",
                      "ffn_norm.weight": "pre_feedforward_layernorm.weight",
                      "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
                      "attn_q_norm.weight": "self_attn.q_norm.weight",
                      "attn_k_norm.weight": "self_attn.k_norm.weight"}
_QWEN3_LAYER_NAMES = {**_LAYER_NAMES, "attn_q_norm.weight": "self_attn.q_norm.weight",
                      "attn_k_norm.weight": "self_attn.k_norm.weight"}
GGUF_ARCHS: dict[str, GGUFArch] = {
    "llama": GGUFArch(_llama_config, _LAYER_NAMES, permuted_qk=True),
    "gemma2": GGUFArch(_gemma_config, _GEMMA_LAYER_NAMES, permuted_qk=False, norm_offset=1.0),
    "gemma3": GGUFArch(_gemma_config, _GEMMA_LAYER_NAMES, permuted_qk=False, norm_offset=1.0),
    "phi3": GGUFArch(_phi3_config, _PHI3_LAYER_NAMES, permuted_qk=False, partial_rotary=True),
    "qwen2": GGUFArch(_qwen_config, _LAYER_NAMES, permuted_qk=False),
    "qwen3": GGUFArch(_qwen_config, _QWEN3_LAYER_NAMES, permuted_qk=False),
}
SUPPORTED_ARCHITECTURES = list(GGUF_ARCHS)


def _f32(v: Any) -> float:
    """A float32 metadata value as the shortest decimal that round-trips (9.99999975e-06 -> 1e-05)."""
    return float(str(np.float32(v)))


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of convert_hf_to_gguf.py's LlamaModel.permute: interleaved RoPE pairs -> rotate_half halves."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


class GGUFSource:
    """A .gguf file of one of GGUF_ARCHS as a ModelSource (config, tokenizer, HF-named float32 tensors)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        # every split opened and checked first (gguf_split.py); the model's metadata is the first split's
        parts = open_splits(self.path, _open_reader, _metadata)
        self._meta = {k: v for k, v in parts[0][2].items() if k not in SPLIT_KEYS}
        arch = self._meta.get("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise BuildError(
                f"general.architecture {arch!r} is not supported by the GGUF importer; supported: {', '.join(SUPPORTED_ARCHITECTURES)}",
                self.path,
            )
        self.arch, self._arch = arch, GGUF_ARCHS[arch]
        self._by_gguf = {t.name: t for _, reader, _ in parts for t in reader.tensors}
        self._file_of = {t.name: p for p, reader, _ in parts for t in reader.tensors}
        self._names = self._map_names()  # HF name -> GGUF name
        self.config = self._build_config()
        self.generation_config = {
            k: self.config[k] for k in ("bos_token_id", "eos_token_id") if self.config.get(k) is not None
        }
        self.tokenizer_json, self.tokenizer_config = build_tokenizer(self._meta, self.path)

    # ---- metadata -> config.json

    def _key(self, suffix: str, default: Any = ...) -> Any:
        key = f"{self.arch}.{suffix}"
        if key not in self._meta:
            if default is ...:
                raise BuildError(f"missing required metadata key '{key}'", self.path)
            return default
        return self._meta[key]

    def _int(self, suffix: str, default: Any = ...) -> int:
        """A positive integer metadata value (a per-layer array, a string or 0 is refused, naming the key)."""
        if f"{self.arch}.{suffix}" not in self._meta and default is not ...:
            return default
        v = self._key(suffix)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise BuildError(f"metadata key '{self.arch}.{suffix}' must be a positive integer, got {str(v)[:60]!r}", self.path)
        return v

    def _num(self, suffix: str, default: float) -> float:
        """A finite positive float32 metadata value."""
        if f"{self.arch}.{suffix}" not in self._meta:
            return _f32(default)
        v = self._key(suffix)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
            raise BuildError(f"metadata key '{self.arch}.{suffix}' must be a finite positive number, got {str(v)[:60]!r}", self.path)
        return _f32(v)

    def _build_config(self) -> dict[str, Any]:
        # Checked here because the defaults below divide by them; the config is checked again
        # as a whole by parse_decoder_config.
        hidden = self._int("embedding_length")
        heads = self._int("attention.head_count")
        kv_heads = self._int("attention.head_count_kv", heads)
        head_dim = self._int("attention.key_length", max(1, hidden // heads))
        rope_dim = self._int("rope.dimension_count", head_dim)
        if rope_dim != head_dim and not self._arch.partial_rotary:
            raise BuildError(f"partial rotary embeddings (rope.dimension_count {rope_dim} != head_dim {head_dim}) are not supported", self.path)
        if self._int("attention.value_length", head_dim) != head_dim:
            raise BuildError("attention.value_length differs from attention.key_length; not supported", self.path)
        embd = self._by_gguf.get("token_embd.weight")
        tokens = self._meta.get("tokenizer.ggml.tokens")
        vocab = self._int("vocab_size", None) or (len(tokens) if tokens else None) or (int(embd.shape[1]) if embd is not None else None)
        if vocab is None:
            raise BuildError(f"cannot tell the vocabulary size (no {self.arch}.vocab_size, tokens or token_embd.weight)", self.path)
        theta = self._num("rope.freq_base", 10000.0)
        cfg: dict[str, Any] = {
            "hidden_size": hidden,
            "intermediate_size": self._int("feed_forward_length"),
            "num_hidden_layers": self._int("block_count"),
            "num_attention_heads": heads,
            "num_key_value_heads": kv_heads,
            "head_dim": head_dim,
            "vocab_size": int(vocab),
            "rms_norm_eps": self._num("attention.layer_norm_rms_epsilon", 1e-5),
            "rope_theta": theta,
            "rope_scaling": rope_scaling(self, theta, head_dim),
            "max_position_embeddings": self._int("context_length", 2048),
            "tie_word_embeddings": "output.weight" not in self._by_gguf,
            "attention_bias": "blk.0.attn_q.bias" in self._by_gguf,
            "mlp_bias": False,
            **self._arch.config(self),  # last: phi3's rope_scaling replaces the llama-style one above
        }
        for hf, key in (("bos_token_id", "bos"), ("eos_token_id", "eos"), ("pad_token_id", "padding")):
            v = self._meta.get(f"tokenizer.ggml.{key}_token_id")
            if v is not None:
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise BuildError(f"metadata key 'tokenizer.ggml.{key}_token_id' must be a token id, got {v!r}", self.path)
                cfg[hf] = v
        return cfg

    # ---- tensors

    def _map_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for g in self._by_gguf:
            if g in _CONSUMED:
                continue
            hf = _GLOBAL_NAMES.get(g)
            m = _LAYER_RE.fullmatch(g)
            if m and m.group(2) in self._arch.layer_names:
                hf = f"model.layers.{m.group(1)}.{self._arch.layer_names[m.group(2)]}"
            if hf is None:
                raise BuildError(f"tensor '{g}' has no HF {self.arch} equivalent; not supported", self.path)
            names[hf] = g
        return names

    def tensor_names(self) -> list[str]:
        return list(self._names)

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        # ggml's ne lists the fastest-varying dim first; numpy's shape is the reverse.
        return tuple(int(d) for d in reversed(self._tensor(name).shape.tolist()))

    def gguf_tensor_type(self, name: str) -> str:
        """The GGUF storage type of an HF-named tensor, e.g. "Q4_1", "Q8_0", "F32"."""
        return self._tensor(name).tensor_type.name

    def read(self, name: str) -> np.ndarray:
        """The tensor as float32 in HF layout (dequantized on its own, never the whole model)."""
        g = self._names.get(name)
        if g is None:
            raise KeyError(name)
        w = self._dequantize(g)
        if self._arch.norm_offset and g.endswith("norm.weight"):
            w = w - np.float32(self._arch.norm_offset)  # back to HF's w (transformers' GGUF loader does the same)
        if self._arch.permuted_qk and g.endswith(("attn_q.weight", "attn_q.bias")):
            w = _unpermute(w, self.config["num_attention_heads"])
        elif self._arch.permuted_qk and g.endswith(("attn_k.weight", "attn_k.bias")):
            w = _unpermute(w, self.config["num_key_value_heads"])
        return np.ascontiguousarray(w, dtype=np.float32)

    def where(self, name: str) -> str:
        return str(self._file_of.get(self._names.get(name, ""), self.path))

    def stored_parts(self, name: str) -> tuple[str, dict[str, np.ndarray]] | None:
        """The tensor's GGUF blocks re-laid-out losslessly into a bundle format, or None.

        Q4_0 -> q4 (w = d * (n - 8)), Q4_1 -> q4a (w = d * n + m), Q8_0 -> q8 (w = d * q):
        the same group of 32, the same f16 scales and the same integer codes, so
        the bundle reproduces the GGUF's own weights bit for bit (no double quantization).
        A ggml block keeps element j in the low nibble of byte j and element j+16 in its high nibble."""
        t = self._tensor(name)
        kind = t.tensor_type.name
        if len(t.shape) != 2 or (kind not in _LOSSLESS and kind not in kquant.BY_GGUF):
            return None
        rows, cols = self.tensor_shape(name)
        if kind in kquant.BY_GGUF:
            fmt = kquant.BY_GGUF[kind]
            try:
                parts = kquant.from_gguf(fmt, t.data, rows, cols)
            except ValueError as e:
                raise BuildError(f"tensor '{self._names[name]}' ({kind}): {e}", self.where(name)) from None
            return fmt, self._unpermute_rows(name, parts)
        fmt, block_bytes = _LOSSLESS[kind]
        blocks = np.asarray(t.data).reshape(-1).view(np.uint8).reshape(rows, cols // 32, block_bytes)
        d = np.ascontiguousarray(blocks[..., 0:2]).view(np.float16)[..., 0]
        if fmt == "q8":
            data = np.ascontiguousarray(blocks[..., 2:34]).view(np.uint32).reshape(rows, -1)
            parts = {"data": data, "scales": d}
        else:
            qs = blocks[..., -16:]
            nib = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.uint32)  # (rows, G, 32) in column order
            words = np.bitwise_or.reduce(nib.reshape(rows, -1, 8) << (np.arange(8, dtype=np.uint32) * 4), axis=-1)
            parts = {"data": words.astype(np.uint32)}
            if fmt == "q4a":
                m = np.ascontiguousarray(blocks[..., 2:4]).view(np.float16)[..., 0]
                parts["scales"] = np.stack([d, m], axis=-1).reshape(rows, -1)
            else:
                parts["scales"] = d
        return fmt, self._unpermute_rows(name, parts)

    def _unpermute_rows(self, name: str, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The row permutation read() undoes, applied to whole rows of blocks (every format's parts are per row)."""
        g = self._names[name]
        heads = {"attn_q.weight": "num_attention_heads", "attn_k.weight": "num_key_value_heads"} if self._arch.permuted_qk else {}
        for suffix, key in heads.items():
            if g.endswith(suffix):
                order = _unpermute(np.arange(next(iter(parts.values())).shape[0]), self.config[key])
                parts = {k: v[order] for k, v in parts.items()}
        return {k: np.ascontiguousarray(v) for k, v in parts.items()}

    def conversion_note(self, name: str, fmt: str, error: dict[str, float]) -> str | None:
        """A line for a quantized GGUF tensor that no bundle format holds and the build converted to `fmt`
        (the error is measured against the GGUF's own dequantized values); None when nothing was lost
        to a conversion (kept blocks, float tensors)."""
        kind = self.gguf_tensor_type(name)
        if kind in _FLOAT_TYPES or kind in _LOSSLESS or kind in kquant.BY_GGUF:
            return None
        rel = error["rms"] / max(error["weight_rms"], 1e-30)
        return (f"{self._names[name]}: GGUF type {kind} has no bundle format; converted to {fmt} "
                f"(max |err| {error['max_abs']:.3g}, rms err {rel:.2%} of the weights' rms)")

    def _tensor(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        return self._by_gguf[self._names[name]]

    def _dequantize(self, gguf_name: str) -> np.ndarray:
        from gguf.quants import dequantize

        t = self._by_gguf[gguf_name]
        shape = tuple(int(d) for d in reversed(t.shape.tolist()))
        try:
            w = dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            raise BuildError(f"tensor '{gguf_name}' has type {t.tensor_type.name}, which the gguf package cannot dequantize",
                             self._file_of[gguf_name]) from None
        return np.asarray(w, dtype=np.float32).reshape(shape)


def _open_reader(path: Path) -> Any:
    """GGUFReader over `path`, with every way a bad file fails turned into a BuildError naming it."""
    from gguf import GGUFReader

    if not path.is_file():
        raise BuildError("file not found", path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise BuildError(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')", path)
    try:
        reader = GGUFReader(path, "r")
    except Exception as e:  # the reader raises ValueError, IndexError, struct/numpy errors on bad bytes
        raise BuildError(f"truncated or corrupt GGUF file ({type(e).__name__}: {e})", path) from None
    size = path.stat().st_size
    for t in reader.tensors:
        # A truncated file can still parse: the reader's memmap views just come up short.
        if t.data_offset + t.n_bytes > size or t.data.nbytes != t.n_bytes:
            raise BuildError(f"tensor '{t.name}' runs past the end of the file (truncated download?)", path)
    return reader


def _metadata(reader: Any) -> dict[str, Any]:
    """A reader's metadata keys (not the GGUF.* header fields) as Python values."""
    return {k: _field_value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def _field_value(field: Any) -> Any:
    """A metadata field as a Python value (str, int, float, bool, or a list of those)."""
    try:
        return field.contents()
    except Exception:  # a field the reader cannot decode is simply left out of the config
        return None


def tokenizer_from_gguf(path: str | Path) -> tuple[str, dict[str, Any]]:
    """(tokenizer.json text, tokenizer_config) of any GGUF, whatever its architecture
    (vocab-only files included); GGUFSource does the same for llama models."""
    path = Path(path)
    reader = _open_reader(path)
    return build_tokenizer({k: _field_value(f) for k, f in reader.fields.items() if k.startswith("tokenizer.")}, path)
