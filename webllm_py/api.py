"""The public Python API: build() a bundle, load() it on a backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .bundle import Bundle, write_bundle
from .errors import BuildError, BundleError

BACKENDS = ("reference", "native")


def open_source(path: str | Path):
    """A ModelSource for an HF model folder, a .gguf file (any split of one) or a folder of one GGUF model."""
    p = Path(path)
    if p.is_dir():
        from .models.gguf_split import gguf_in_folder
        from .models.source import HFFolderSource

        gguf_file = gguf_in_folder(p)  # a folder of one GGUF model (gguf-split's files) without config.json
        return HFFolderSource(p) if gguf_file is None else open_source(gguf_file)
    if p.suffix == ".gguf" and p.is_file():
        from .models.gguf_source import GGUFSource

        return GGUFSource(p)
    if not p.exists():
        if _looks_like_hub_id(str(path)):
            from .models.source import HFFolderSource

            return HFFolderSource(download_from_hub(str(path)))
        raise BuildError("no such file or folder", p)
    raise BuildError("expected an HF model folder or a .gguf file", p)


HUB_FILES = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
             "*.safetensors", "model.safetensors.index.json"]


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return len(parts) == 2 and all(parts) and not s.startswith((".", "~")) and "\\" not in s


def download_from_hub(repo_id: str) -> Path:
    """The local folder of an HF Hub model (only the files a build reads), via huggingface_hub's cache.

    Offline (no network, or HF_HUB_OFFLINE=1) this works only for models already in the cache;
    otherwise it raises a BuildError that says so."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise BuildError(f"'{repo_id}' is not a local folder or file, and huggingface_hub is not installed "
                         "to download it (pip install huggingface_hub)") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except Exception as e:  # offline, unknown repo, gated model, ...: one clear line
        raise BuildError(f"could not get '{repo_id}' from the Hugging Face Hub ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200]}); offline? pass a local HF folder or .gguf file instead") from None


DEFAULT_QUANTIZATION = "q4"  # language models (embedding models: bundle/encoder_writer.py, q8)


def build(model: str | Path, out: str | Path, *, quantization: str | None = None, progress: bool = True,
          **options: Any) -> Path:
    """Compile an HF model folder or GGUF file into a bundle folder at `out`.

    quantization: q4 / q8 / f16 / f32 / q4a; None: q4 for a language model, q8 for an embedding model.

    options: embedding_format, context_window, prefill_chunk, shard_bytes, model_id; for an encoder
    (embedding) model: max_batch_tokens, max_batch_rows (bundle/encoder_writer.py)."""
    source = open_source(model)
    from .models.embedding_models import is_embedding_source

    if is_embedding_source(source):
        from .bundle.encoder_writer import DEFAULT_QUANTIZATION as ENCODER_QUANTIZATION
        from .bundle.encoder_writer import encoder_options, write_encoder_bundle

        return write_encoder_bundle(source, out, quantization=quantization or ENCODER_QUANTIZATION, progress=progress,
                                    **encoder_options(source.config["model_type"], options))
    return write_bundle(source, out, quantization=quantization or DEFAULT_QUANTIZATION, progress=progress, **options)


def load(path: str | Path, backend: str = "native", precision: str = "auto", *, verify: bool = True, **options: Any):
    """Load a bundle on a backend; returns a LanguageModel (see runtime/lm.py).

    backend: "reference" (numpy) or "native" (wgpu-py). precision: "auto", "f32", "f16" or "idot"
    (f32 activations, decode matmuls as integer dot products on packed 9-bit activations).
    context_window_size: KV-cache rows to allocate, up to the bundle's context_window (default)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    bundle = Bundle(path)
    from .runtime.embedder import is_embedding_bundle

    if is_embedding_bundle(bundle.manifest):
        raise BundleError("is an embedding model, not a language model: use webllm_py.load_embedder() or "
                          "Engine(...).embeddings.create()", bundle.dir)
    if verify:
        bundle.verify(progress=options.pop("progress", False))
    if backend == "reference":
        from .reference import ReferenceModel

        return ReferenceModel(bundle, precision, context_window_size=options.pop("context_window_size", None))
    from .runtime.native import NativeModel

    return NativeModel(bundle, precision, **options)


def load_embedder(path: str | Path, backend: str = "native", precision: str = "auto", *, verify: bool = True,
                  **options: Any):
    """Load an embedding bundle; returns an encoder whose `encode(token_rows)` gives (rows, dimensions)
    float32 embeddings (runtime/embedder.py). A language-model bundle is a BundleError."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    bundle = Bundle(path)
    from .runtime.embedder import is_embedding_bundle

    if not is_embedding_bundle(bundle.manifest):
        raise BundleError("is a language model, not an embedding model: use webllm_py.load() or Engine chat; "
                          "embed with a bundle built from an embedding model (BERT, XLM-RoBERTa)", bundle.dir)
    if verify:
        bundle.verify(progress=options.pop("progress", False))
    if backend == "reference":
        from .reference.encoder import ReferenceEncoder

        return ReferenceEncoder(bundle, precision)
    from .runtime.encoder import NativeEncoder

    return NativeEncoder(bundle, precision, **options)
