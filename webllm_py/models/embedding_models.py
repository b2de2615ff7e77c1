"""Which model folders are embedding models, and what the embedding-bundle writer needs of each.

One entry per model_type in EMBEDDERS: encoders (BERT, XLM-RoBERTa) always embed; decoder
checkpoints (Qwen3) embed when the folder has sentence-transformers' modules.json (the
same model_type without it is a language model, compiled by bundle/writer.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import BuildError
from ..ir import Graph
from . import decoder_embedding, encoder
from .sentence_transformers import EmbeddingRecipe, read_recipe
from .source import ModelSource


@dataclass
class EmbeddingModel:
    model_type: str
    config: Any  # EncoderConfig | DecoderConfig: to_json() goes to the manifest
    vocab_size: int
    hidden_size: int
    recipe: EmbeddingRecipe
    graph: Graph
    names: dict[str, str]  # graph param -> checkpoint tensor name (computed params are not listed)
    ignorable: Callable[[str], bool]  # checkpoint tensors the graph may leave unused
    computed: dict[str, np.ndarray] = field(default_factory=dict)  # params computed from the config


def _encoder(source: ModelSource, path: Path) -> EmbeddingModel:
    cfg = encoder.parse_encoder_config(source.config, path)
    recipe = read_recipe(source.path, cfg.max_tokens, source.tokenizer_config)
    graph = encoder.build_encoder_graph(cfg, recipe.pooling, recipe.normalize)
    prefix = encoder.checkpoint_prefix(source.tensor_names())
    return EmbeddingModel(cfg.model_type, cfg, cfg.vocab_size, cfg.hidden_size, recipe, graph,
                          {n: prefix + n for n in graph.params},
                          lambda n: encoder.ignorable(n[len(prefix):] if n.startswith(prefix) else n))


def _decoder(source: ModelSource, path: Path) -> EmbeddingModel:
    from .registry import parse_config
    from .rope import inv_freq

    cfg = parse_config(source.config, path)
    recipe = read_recipe(source.path, cfg.max_position_embeddings, source.tokenizer_config)
    graph = decoder_embedding.build_decoder_embedding_graph(cfg, recipe.pooling, recipe.normalize)
    names = decoder_embedding.source_names(graph, set(source.tensor_names()))
    return EmbeddingModel(cfg.model_type, cfg, cfg.vocab_size, cfg.hidden_size, recipe, graph, names,
                          decoder_embedding.ignorable, {decoder_embedding.INV_FREQ: inv_freq(cfg)})


# model_type -> (is this folder an embedding model?, the writer's view of it)
EMBEDDERS: dict[str, tuple[Callable[[Path], bool], Callable[[ModelSource, Path], EmbeddingModel]]] = {
    **{t: (lambda folder: True, _encoder) for t in encoder.ENCODERS},
    **{t: (lambda folder: (folder / "modules.json").exists(), _decoder) for t in decoder_embedding.DECODER_EMBEDDERS},
}


def is_embedding_source(source: ModelSource) -> bool:
    entry = EMBEDDERS.get(source.config.get("model_type"))
    return entry is not None and source.path.is_dir() and entry[0](source.path)


def embedding_model(source: ModelSource) -> EmbeddingModel:
    entry = EMBEDDERS.get(source.config.get("model_type"))
    if entry is None:
        raise BuildError(f"model_type {source.config.get('model_type')!r} is not an embedding model "
                         f"(embedding model types: {', '.join(sorted(EMBEDDERS))})", source.path / "config.json")
    return entry[1](source, source.path / "config.json")
