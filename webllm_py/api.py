"""The public Python API: build() a bundle, load() it on a backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import Bundle, write_bundle
from .errors import BuildError

BACKENDS = ("reference", "native")


def open_source(path: str | Path):
    """A ModelSource for an HF model folder or a .gguf file."""
    p = Path(path)
    if p.is_dir():
        from .models.source import HFFolderSource

        return HFFolderSource(p)
    if p.suffix == ".gguf" and p.is_file():
        from .models.gguf_source import GGUFSource

        return GGUFSource(p)
    if not p.exists():
        raise BuildError("no such file or folder", p)
    raise BuildError("expected an HF model folder or a .gguf file", p)


def build(model: str | Path, out: str | Path, *, quantization: str = "q4", progress: bool = True, **options: Any) -> Path:
    """Compile an HF model folder or GGUF file into a bundle folder at `out`.

    options: embedding_format, context_window, prefill_chunk, shard_bytes, model_id."""
    return write_bundle(open_source(model), out, quantization=quantization, progress=progress, **options)


def load(path: str | Path, backend: str = "native", precision: str = "auto", *, verify: bool = True, **options: Any):
    """Load a bundle on a backend; returns a LanguageModel (see runtime/lm.py).

    backend: "reference" (numpy) or "native" (wgpu-py). precision: "auto", "f32", "f16"."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    bundle = Bundle(path)
    if verify:
        bundle.verify(progress=options.pop("progress", False))
    if backend == "reference":
        from .reference import ReferenceModel

        return ReferenceModel(bundle, precision)
    from .runtime.native import NativeModel

    return NativeModel(bundle, precision, **options)
