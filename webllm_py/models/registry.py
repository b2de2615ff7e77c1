"""Architecture registry: HF model_type -> how to parse its config.

One entry per supported `model_type`: how to parse its config and which graph builder
(`builder`: a module with build_graph, param_scales, param_offsets, computed_params,
checkpoint_names, ignorable) compiles it: the Llama-family decoder (models/decoder.py) or
Gemma 2/3 (models/gemma.py). `sliding_window_kernels`: the builder's attention implements the
config's sliding window, so a context window past it is allowed (build_limits.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from ..errors import BuildError
from . import decoder, gemma
from .config import DecoderConfig, parse_decoder_config
from .config_fields import require_object
from .phi3 import parse_phi3_config


@dataclass(frozen=True)
class Architecture:
    model_type: str
    family: str
    parse_config: Callable[[dict[str, Any], Path], DecoderConfig]
    builder: ModuleType = decoder
    sliding_window_kernels: bool = False


def _entry(model_type: str, family: str, **kw: Any) -> Architecture:
    return Architecture(model_type, family, lambda cfg, path: parse_decoder_config(cfg, path, **kw))


ARCHITECTURES: dict[str, Architecture] = {
    a.model_type: a
    for a in [
        _entry("llama", "llama", o_proj_bias=True),  # Llama 2/3/3.1/3.2, TinyLlama, SmolLM/SmolLM2
        _entry("mistral", "llama"),
        _entry("qwen2", "qwen", qkv_bias_default=True),  # q/k/v carry biases
        _entry("qwen3", "qwen", qk_norm=True, o_proj_bias=True),  # q/k RMSNorm per head, explicit head_dim
        _entry("smollm3", "llama", o_proj_bias=True, nope_layers=True),  # every 4th layer without RoPE (NoPE)
        # norms after attention and MLP (no pre-norms); q/k RMSNorm over the whole projection
        _entry("olmo2", "olmo", o_proj_bias=True, qk_norm=True, qk_norm_scope="projection", post_norms=True),
        _entry("granite", "granite", o_proj_bias=True, multipliers=True),  # embedding/residual/attention/logits multipliers
        # fused qkv_proj / gate_up_proj as stored, partial rotary, longrope (Phi-3, Phi-3.5, Phi-4-mini)
        Architecture("phi3", "phi3", parse_phi3_config),
        # (1 + w) norms, pre+post norms, GeGLU, sliding-window layers, soft-capping (gemma2) / two rope bases
        # and q/k norm (gemma3): models/gemma.py
        Architecture("gemma2", "gemma", gemma.parse_gemma_config, gemma, sliding_window_kernels=True),
        Architecture("gemma3_text", "gemma", gemma.parse_gemma_config, gemma, sliding_window_kernels=True),
        Architecture("gemma3", "gemma", gemma.refuse_multimodal, gemma),  # vision + text: refused (gemma.py)
    ]
}


def architecture(cfg: DecoderConfig) -> Architecture:
    """The registry entry a parsed config came from."""
    return ARCHITECTURES[cfg.model_type]


def parse_config(cfg: dict[str, Any], path: Path) -> DecoderConfig:
    model_type = require_object(cfg, path).get("model_type")
    if not isinstance(model_type, str) or model_type not in ARCHITECTURES:
        raise BuildError(
            f"model_type {model_type!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}", path
        )
    return ARCHITECTURES[model_type].parse_config(cfg, path)
