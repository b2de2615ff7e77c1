"""Lowering of the encoder graph (models/encoder.py) to programs: filled in by the next step."""

from __future__ import annotations

from typing import Any

from ..ir import Graph


def lower_encoder(graph: Graph, weights: dict[str, Any], max_tokens: int, max_rows: int, **_: Any) -> dict[str, Any]:
    return {"programs": {}, "buffers": {}, "kernels": {}, "wgsl_language_features": {}}
