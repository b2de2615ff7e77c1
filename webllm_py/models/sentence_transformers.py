"""The embedding recipe of a sentence-transformers folder: pooling, normalization, truncation.

sentence-transformers keeps it beside the HF files: `modules.json` lists the
pipeline (Transformer -> Pooling -> [Normalize]), `1_Pooling/config.json` the
pooling mode, `sentence_bert_config.json` max_seq_length and do_lower_case, and
`config_sentence_transformers.json` named prompts (instruction prefixes). A
folder without modules.json embeds as sentence-transformers would load a plain
HF model: mean pooling, not normalized, truncated at the position table's end.
Anything in the pipeline this compiler does not reproduce (Dense layers, max
pooling, ...) is a BuildError naming the file and field, never a silent change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BuildError

# 1_Pooling/config.json flag -> pooling mode of the graph's `pool` op
POOLING_FLAGS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_lasttoken": "last"}
UNSUPPORTED_FLAGS = ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens")
MODULE_KINDS = {  # modules.json "type" -> its role
    "sentence_transformers.models.Transformer": "transformer",
    "sentence_transformers.models.Pooling": "pooling",
    "sentence_transformers.models.Normalize": "normalize",
}
POOLING_MODES = ("mean", "cls", "last")


@dataclass(frozen=True)
class EmbeddingRecipe:
    pooling: str  # "mean" | "cls" | "last"
    normalize: bool
    max_seq_length: int  # tokens per text, special tokens included; longer texts are truncated
    lowercase: bool = False  # sentence-transformers lowercases the text before tokenizing
    prompts: dict[str, str] = field(default_factory=dict)  # name -> prefix (config_sentence_transformers.json)
    default_prompt_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError("file is missing (listed in modules.json)", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BuildError(f"not valid JSON ({e})", path) from None


def _pooling_mode(path: Path) -> str:
    cfg = _json(path)
    if not isinstance(cfg, dict):
        raise BuildError("expected a JSON object", path)
    bad = [f for f in UNSUPPORTED_FLAGS if cfg.get(f)]
    if bad:
        raise BuildError(f"{bad[0]} is not supported (supported: {', '.join(POOLING_FLAGS)})", path)
    if cfg.get("include_prompt") is False:
        raise BuildError("include_prompt false (pooling without the prompt tokens) is not supported", path)
    modes = [m for f, m in POOLING_FLAGS.items() if cfg.get(f)]
    if len(modes) != 1:
        raise BuildError(f"exactly one of {', '.join(POOLING_FLAGS)} must be true, got {len(modes)}", path)
    return modes[0]


def _modules(folder: Path) -> list[tuple[str, Path]]:
    path = folder / "modules.json"
    mods = _json(path)
    if not isinstance(mods, list) or not all(isinstance(m, dict) for m in mods):
        raise BuildError("expected a list of modules", path)
    out = []
    for m in mods:
        kind = MODULE_KINDS.get(m.get("type"))
        if kind is None:
            raise BuildError(f"module {m.get('name')!r} of type {m.get('type')!r} is not supported "
                             f"(supported: Transformer, Pooling, Normalize)", path)
        out.append((kind, folder / str(m.get("path", ""))))
    if [k for k, _ in out][:2] != ["transformer", "pooling"] or len(out) > 3 or (len(out) == 3 and out[2][0] != "normalize"):
        raise BuildError(f"expected Transformer, Pooling[, Normalize]; got {', '.join(k for k, _ in out)}", path)
    return out


def read_recipe(folder: Path, max_tokens: int, tokenizer_config: dict[str, Any]) -> EmbeddingRecipe:
    """The recipe of `folder` (an HF folder, maybe with sentence-transformers files).

    max_tokens: the longest row the model's position table covers; max_seq_length may not exceed it."""
    model_max = tokenizer_config.get("model_max_length")
    default_len = min(max_tokens, model_max) if isinstance(model_max, int) and model_max > 0 else max_tokens
    if not (folder / "modules.json").exists():
        return EmbeddingRecipe(pooling="mean", normalize=False, max_seq_length=default_len)
    mods = _modules(folder)
    pooling = _pooling_mode(mods[1][1] / "config.json")
    st_path = folder / "sentence_bert_config.json"
    st = _json(st_path) if st_path.exists() else {}
    length = st.get("max_seq_length", default_len)
    if length is None:
        length = default_len
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= max_tokens:
        raise BuildError(f"max_seq_length {length!r} must be an integer in 1..{max_tokens} "
                         "(the model's position table)", st_path)
    prompts, default_prompt = {}, None
    cst_path = folder / "config_sentence_transformers.json"
    if cst_path.exists():
        cst = _json(cst_path)
        prompts = cst.get("prompts") or {}
        if not isinstance(prompts, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in prompts.items()):
            raise BuildError("prompts must map names to strings", cst_path)
        default_prompt = cst.get("default_prompt_name")
        if default_prompt is not None and default_prompt not in prompts:
            raise BuildError(f"default_prompt_name {default_prompt!r} is not one of the prompts", cst_path)
    return EmbeddingRecipe(pooling=pooling, normalize=len(mods) == 3, max_seq_length=length,
                           lowercase=bool(st.get("do_lower_case", False)), prompts=dict(prompts),
                           default_prompt_name=default_prompt)
