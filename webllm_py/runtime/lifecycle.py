"""Engine lifecycle, as WebLLM's: options chosen at load, `reload` onto another bundle, `get_message`.

engine.py calls these few hooks; the logic lives here so that the engine stays about requests.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .embeddings import is_embedding_bundle_dir

if TYPE_CHECKING:
    from .engine import Engine


def load_only(model: Any, **options: Any) -> None:
    """Refuse load options (context_window_size) the Engine cannot apply: it got an already
    loaded model, or the bundle is an embedding model (no KV cache)."""
    given = sorted(k for k, v in options.items() if v is not None)
    if not given:
        return
    if not isinstance(model, (str, Path)):
        raise ValueError(f"{given[0]} is chosen when the bundle is loaded: pass it to webllm_py.load(), or give "
                         "Engine the bundle folder instead of a loaded model")
    if is_embedding_bundle_dir(model):
        raise ValueError(f"{given[0]}: {model} is an embedding model, which has no context window to choose")
