"""webllm-py: compile Hugging Face language models into WebGPU bundles; run them natively and in the browser."""

from .api import build, load, load_embedder
from .errors import BuildError, BundleError, BundleVersionError, ContextWindowExceededError, IntegrityError

__version__ = "0.1.0"

__all__ = ["build", "load", "load_embedder", "BuildError", "BundleError", "BundleVersionError", "ContextWindowExceededError",
           "IntegrityError", "Engine"]


def __getattr__(name: str):
    if name == "Engine":  # lazy: the engine pulls in tokenizers and jinja2
        from .runtime.engine import Engine

        return Engine
    raise AttributeError(name)
