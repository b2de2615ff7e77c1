"""`engine.embeddings.create(...)`: OpenAI's embeddings API over an embedding bundle.

Request (OpenAI's fields, nothing else; an unknown field is a ValueError naming it):
  input            a string, a list of strings, a list of token ids or a list of such lists
                   (at most MAX_INPUTS); strings are lowercased if the model's recipe says so,
                   prefixed with its default prompt, tokenized with the bundle's tokenizer and
                   truncated at max_seq_length (as sentence-transformers does); token lists must
                   already fit, and are embedded as given
  model            optional; the response names the bundle's model either way
  dimensions       1..dimensions: Matryoshka truncation, renormalized when the model normalizes
  encoding_format  "float" (default) or "base64" (little-endian float32, as OpenAI sends it)
  user             accepted and ignored
Response: {object "list", data [{object "embedding", index, embedding}], model,
usage {prompt_tokens, total_tokens}} with to_dict()/to_json() like runtime/openai_types.py.
"""

from __future__ import annotations

import base64
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import BundleError
from .embedder import BatchedEncoder
from .openai_types import _Base

MAX_INPUTS = 2048  # OpenAI's limit of inputs per request
ENCODING_FORMATS = ("float", "base64")
FIELDS = ("input", "model", "dimensions", "encoding_format", "user")


@dataclass
class Embedding(_Base):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


@dataclass
class EmbeddingUsage(_Base):
    prompt_tokens: int
    total_tokens: int


@dataclass
class CreateEmbeddingResponse(_Base):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    object: str = "list"


@dataclass
class _Request:
    texts: list[str] | None = None  # or
    token_rows: list[list[int]] | None = None
    dimensions: int | None = None
    encoding_format: str = "float"
    extra: dict[str, Any] = field(default_factory=dict)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def parse_input(value: Any) -> tuple[list[str] | None, list[list[int]] | None]:
    """(texts, None) or (None, token rows) from OpenAI's `input`; ValueError naming what is wrong."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("input must be a non-empty string, list of strings, list of token ids or list of such lists")
    if len(value) > MAX_INPUTS:
        raise ValueError(f"input has {len(value)} items; at most {MAX_INPUTS} per request")
    if all(isinstance(v, str) for v in value):
        empty = [i for i, v in enumerate(value) if not v]
        if empty:
            raise ValueError(f"input[{empty[0]}] is an empty string")
        return list(value), None
    if all(_is_int(v) for v in value):
        return None, [[int(v) for v in value]]
    if all(isinstance(v, (list, tuple)) for v in value):
        rows = []
        for i, r in enumerate(value):
            if not r or not all(_is_int(t) for t in r):
                raise ValueError(f"input[{i}] must be a non-empty list of token ids (integers)")
            rows.append([int(t) for t in r])
        return None, rows
    raise ValueError("input must be one kind: strings, token ids, or lists of token ids (not a mix)")


class Embeddings:
    """engine.embeddings: `create(input=..., dimensions=..., encoding_format=...)`."""

    def __init__(self, encoder: BatchedEncoder | None, model_name: str, bundle_dir: Path | None = None,
                 unavailable: str = ""):
        self._encoder = encoder
        self.model_name = model_name
        self._unavailable = unavailable
        self._lock = threading.Lock()
        self._tok = None
        if encoder is not None:
            from tokenizers import Tokenizer

            m = encoder.manifest
            path = Path(bundle_dir) / m["tokenizer"]["file"]
            try:
                self._tok = Tokenizer.from_file(str(path))
            except Exception as e:  # the Rust error type is not exported
                raise BundleError(f"cannot load tokenizer: {str(e).splitlines()[0][:200]}", path) from None
            recipe = m["embedding"]
            self._lowercase = bool(recipe.get("lowercase"))
            name = recipe.get("default_prompt_name")
            self._prefix = (recipe.get("prompts") or {}).get(name, "") if name else ""
            self._normalize = bool(recipe.get("normalize"))

    @classmethod
    def load(cls, path: str | Path, backend: str = "native", precision: str = "auto",
             model_name: str | None = None) -> "Embeddings":
        from ..api import load_embedder

        enc = load_embedder(path, backend=backend, precision=precision)
        return cls(enc, model_name or enc.manifest["model"].get("id") or Path(path).name, Path(path))

    @classmethod
    def refusing(cls, model_name: str) -> "Embeddings":
        """The embeddings of a language-model engine: every create() says why not."""
        return cls(None, model_name, unavailable=f"model {model_name!r} is a language model, not an embedding "
                                                 "model: build a bundle from an embedding model (BERT, XLM-RoBERTa) "
                                                 "to embed")

    @property
    def dimensions(self) -> int:
        return self._encoder.dimensions if self._encoder else 0

    def _check(self, params: Mapping[str, Any]) -> _Request:
        unknown = sorted(set(params) - set(FIELDS))
        if unknown:
            raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"embeddings accept {', '.join(FIELDS)}")
        if "input" not in params:
            raise ValueError("input is required")
        texts, rows = parse_input(params["input"])
        dims = params.get("dimensions")
        if dims is not None and (not _is_int(dims) or not 1 <= dims <= self.dimensions):
            raise ValueError(f"dimensions must be an integer in 1..{self.dimensions}, got {dims!r}")
        fmt = params.get("encoding_format") or "float"
        if fmt not in ENCODING_FORMATS:
            raise ValueError(f"encoding_format must be one of {', '.join(ENCODING_FORMATS)}, got {fmt!r}")
        for name in ("model", "user"):
            if params.get(name) is not None and not isinstance(params[name], str):
                raise ValueError(f"{name} must be a string")
        return _Request(texts, rows, int(dims) if dims is not None else None, fmt)

    def _token_rows(self, req: _Request) -> list[list[int]]:
        if req.token_rows is not None:
            return req.token_rows
        texts = [self._prefix + (t.lower() if self._lowercase else t) for t in req.texts or []]
        return [e.ids for e in self._tok.encode_batch(texts)]

    def check(self, params: Mapping[str, Any]) -> None:
        """Raise what create_from_dict would for `params`' fields and values (ModelKindError for a
        language model), without tokenizing: the REST server's check before it queues a request."""
        if self._encoder is None:
            raise ModelKindError(self._unavailable)
        self._check(params)

    def create_from_dict(self, params: Mapping[str, Any]) -> CreateEmbeddingResponse:
        """create() from a request body (REST); unknown fields are refused."""
        if self._encoder is None:
            raise ModelKindError(self._unavailable)
        req = self._check(params)
        rows = self._token_rows(req)
        try:
            with self._lock:  # one device, one step at a time
                vecs = self._encoder.encode(rows)
        except ValueError as e:
            raise ValueError(f"input: {e}") from None
        if req.dimensions is not None and req.dimensions < vecs.shape[1]:
            vecs = vecs[:, : req.dimensions]
            if self._normalize:  # Matryoshka: a prefix of a unit vector, scaled back to unit length
                vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        vecs = np.ascontiguousarray(vecs, dtype="<f4")
        data = [Embedding(i, base64.b64encode(v.tobytes()).decode("ascii") if req.encoding_format == "base64"
                          else [float(x) for x in v]) for i, v in enumerate(vecs)]
        tokens = sum(len(r) for r in rows)
        return CreateEmbeddingResponse(data, self.model_name, EmbeddingUsage(tokens, tokens))

    def create(self, *, input: str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]],
               model: str | None = None, dimensions: int | None = None, encoding_format: str | None = None,
               user: str | None = None) -> CreateEmbeddingResponse:
        """OpenAI `embeddings.create` (see the module docstring). Bad values raise ValueError naming the field."""
        params = {"input": input, "model": model, "dimensions": dimensions, "encoding_format": encoding_format,
                  "user": user}
        return self.create_from_dict({k: v for k, v in params.items() if v is not None or k == "input"})


class ModelKindError(ValueError):
    """A request the loaded model cannot serve: chat with an embedding model, embed with a language model."""


class Refusing:
    """engine.chat.completions / engine.completions of an embedding-model engine."""

    def __init__(self, message: str):
        self._message = message
        self.completions = self  # engine.chat.completions.create

    def create(self, *args: Any, **kwargs: Any) -> Any:
        raise ModelKindError(self._message)


def init_embedding_engine(engine: Any, path: str | Path, backend: str, precision: str, model_name: str | None) -> None:
    """Make `engine` (an Engine being constructed on an embedding bundle) an embeddings-only engine:
    engine.embeddings works, chat and completions raise ModelKindError saying why."""
    engine.embeddings = Embeddings.load(path, backend=backend, precision=precision, model_name=model_name)
    engine.model = engine.embeddings._encoder
    engine.manifest = engine.model.manifest
    engine.model_name = engine.embeddings.model_name
    why = (f"model {engine.model_name!r} is an embedding model: it cannot chat or complete text; "
           "use embeddings.create (POST /v1/embeddings)")
    engine.chat = Refusing(why)
    engine.completions = Refusing(why)


def is_embedding_bundle_dir(path: str | Path) -> bool:
    """Whether the bundle folder at `path` holds an embedding model (False for anything unreadable:
    the language-model loader then reports the problem)."""
    import json

    try:
        return "embedding" in json.loads((Path(path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
