"""Engine lifecycle, as WebLLM's: options chosen at load, `reload` onto another bundle, `get_message`.

engine.py calls these few hooks; the logic lives here so that the engine stays about requests.

reload(bundle, **options) loads the new bundle completely before it frees the old model, so a
bundle that fails to load (a wrong path, a failed hash, a bad option) leaves the engine answering
with the model it had; while the new one loads both are in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from .embeddings import is_embedding_bundle_dir

if TYPE_CHECKING:
    from .engine import Engine

# Engine(...) keyword options that reload() takes; backend and precision carry over from the
# engine when not given (they are about the machine), the others start from their defaults.
RELOAD_OPTIONS = ("backend", "precision", "context_window_size", "context_overflow", "model_name")
CARRIED = ("backend", "precision")
ENGINE_OWN = ("_lock", "_owner")  # the engine's identity: a reload keeps its lock (and its holder)


def load_options(engine: "Engine", model: Any, backend: str, precision: str, **options: Any) -> None:
    """Remember how `engine` loads (for reload) and refuse load options it cannot apply: it got
    an already loaded model, or the bundle is an embedding model (no KV cache)."""
    loaded = not isinstance(model, (str, Path))
    if loaded:  # reload loads the next bundle on the same backend as this model
        from ..reference import ReferenceModel

        backend, precision = ("reference" if isinstance(model, ReferenceModel) else "native"), getattr(model, "precision", precision)
    engine._load_options = {"backend": backend, "precision": precision}
    given = sorted(k for k, v in options.items() if v is not None)
    if not given:
        return
    if loaded:
        raise ValueError(f"{given[0]} is chosen when the bundle is loaded: pass it to webllm_py.load(), or give "
                         "Engine the bundle folder instead of a loaded model")
    if is_embedding_bundle_dir(model):
        raise ValueError(f"{given[0]}: {model} is an embedding model, which has no context window to choose")


def reload_engine(engine: "Engine", bundle: str | Path, options: Mapping[str, Any]) -> None:
    """Make `engine` serve `bundle` (WebLLM's reload): ends the running request (finish_reason
    "abort"), waits for it, loads the bundle with `options`, then frees the old model."""
    from .create_api import Chat, Completions
    from .engine import Engine

    unknown = sorted(set(options) - set(RELOAD_OPTIONS))
    if unknown:
        raise ValueError(f"reload() got an unknown option {unknown[0]!r}; it takes {', '.join(RELOAD_OPTIONS)}")
    engine.interrupt_generate()  # a stream in another thread ends at its next token and frees the lock
    with engine._exclusive():
        fresh = Engine(bundle, **{**{k: engine._load_options[k] for k in CARRIED}, **options})
        old = engine.model
        own = {k: engine.__dict__[k] for k in ENGINE_OWN}
        # everything else is the fresh engine's (model, tokenizer, caches, stats, options)
        engine.__dict__.clear()
        engine.__dict__.update(vars(fresh), **own)
        for name in ("chat", "completions"):  # the API objects call back into their engine
            api = getattr(engine, name)
            if isinstance(api, (Chat, Completions)):
                setattr(engine, name, type(api)(engine))
        close = getattr(old, "close", None)
        if close is not None and old is not engine.model:
            close()


def record_message(engine: "Engine", choice: int, steps: Iterator[Any]) -> Iterator[Any]:
    """Pass a choice's steps through, keeping the text of choice 0 for get_message()."""
    if choice == 0:
        engine._message = []
    try:
        for s in steps:
            if choice == 0:
                engine._message.append(s.text)
            yield s
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            close()  # the engine's generator cleans up (a grammar guide) when the stream is closed early


def get_message(engine: "Engine") -> str:
    """The reply text of the last request's first choice, so far (WebLLM's getMessage)."""
    return "".join(getattr(engine, "_message", ()))
