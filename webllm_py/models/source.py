"""Model sources: what the compiler reads, whatever the input file format.

A source presents any input (an HF folder, a GGUF file) as an HF model: the
config.json dict, tokenizer files, and tensors by their HF names in HF layout,
read one at a time as float32 so the compiler never holds the whole model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import BuildError
from .config_fields import flag, number, require_object, text, token_ids


class ModelSource(Protocol):
    path: Path
    config: dict[str, Any]  # HF config.json
    generation_config: dict[str, Any]  # HF generation_config.json, {} when absent
    tokenizer_json: str  # text of an HF tokenizer.json
    tokenizer_config: dict[str, Any]  # HF tokenizer_config.json (chat_template, special tokens)

    def tensor_names(self) -> list[str]: ...

    def tensor_shape(self, name: str) -> tuple[int, ...]: ...

    def read(self, name: str) -> np.ndarray:
        """The tensor as float32 in HF layout."""
        ...

    def where(self, name: str) -> str:
        """The file that holds `name`, for error messages."""
        ...


_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
# integer tensors are not weights, but checkpoints carry some (BERT's int64 embeddings.position_ids
# buffer): they are listed so the compiler can ignore them by name, and refused if read
_ST_INT_DTYPES = {"I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


class SafetensorsFile:
    """Lazy, validated access to one .safetensors file (f32, f16, bf16, f64).

    The safetensors library validates the header; tensors are read through a
    memory map so only the tensor asked for is paged in (bf16 too, which the
    library's numpy backend cannot represent).
    """

    def __init__(self, path: Path):
        from safetensors import SafetensorError, safe_open

        self.path = path
        try:
            with safe_open(str(path), framework="numpy") as f:
                names = list(f.keys())
        except (SafetensorError, OSError, ValueError) as e:
            raise BuildError(f"not a valid safetensors file ({e})", path) from None
        size = path.stat().st_size
        with open(path, "rb") as fh:
            (hlen,) = np.frombuffer(fh.read(8), dtype="<u8")
            header = json.loads(fh.read(int(hlen)))
        self._base = 8 + int(hlen)
        self._entries: dict[str, dict[str, Any]] = {}
        for name in names:
            e = header[name]
            dtype = _ST_DTYPES.get(e["dtype"], _ST_INT_DTYPES.get(e["dtype"]))
            if dtype is None:
                raise BuildError(f"tensor {name} has dtype {e['dtype']}; supported: F32, F16, BF16", path)
            start, end = e["data_offsets"]
            want = math.prod(e["shape"]) * np.dtype(dtype).itemsize
            if end - start != want or self._base + end > size:
                raise BuildError(f"tensor {name}: offsets {start}..{end} do not match shape {e['shape']} {e['dtype']} or the file size", path)
            self._entries[name] = e
        self._mm = np.memmap(path, dtype=np.uint8, mode="r") if size else None

    def names(self) -> list[str]:
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._entries[name]["shape"])

    def read(self, name: str) -> np.ndarray:
        e = self._entries[name]
        if e["dtype"] not in _ST_DTYPES:
            raise BuildError(f"tensor {name} has dtype {e['dtype']}; a weight must be F32, F16 or BF16", self.path)
        start, end = e["data_offsets"]
        raw = np.asarray(self._mm[self._base + start : self._base + end])
        arr = raw.view(_ST_DTYPES[e["dtype"]]).reshape(e["shape"])
        if e["dtype"] == "BF16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise BuildError(f"not UTF-8 text (invalid byte at offset {e.start})", path) from None
    except OSError as e:  # a folder named config.json, no permission, ...
        raise BuildError(f"cannot read ({e.strerror or e})", path) from None


def _read_json(path: Path, required: bool = True) -> dict[str, Any]:
    """A JSON object file; {} when absent and not required."""
    if not path.exists():
        if required:
            raise BuildError("file is missing", path)
        return {}
    try:
        return require_object(json.loads(_read_text(path)), path)
    except json.JSONDecodeError as e:
        raise BuildError(f"not valid JSON ({e})", path) from None


def _check_generation_config(gen: dict[str, Any], path: Path) -> None:
    """The fields the bundle's generation defaults and eos ids are read from."""
    for key in ("bos_token_id", "eos_token_id"):
        token_ids(gen, key, path)
    flag(gen, "do_sample", path, True)
    number(gen, "temperature", path, default=None, lo=0.0, lo_open=False)
    number(gen, "top_p", path, default=None, lo=0.0, hi=1.0)


class HFFolderSource:
    """An HF model folder: config.json, model.safetensors or sharded with an index, tokenizer files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise BuildError("not a model folder (expected config.json, *.safetensors, tokenizer.json)", self.path)
        self.config = _read_json(self.path / "config.json")
        text(self.config, "model_type", self.path / "config.json", default=None)  # read before any parse dispatches on it
        self.generation_config = _read_json(self.path / "generation_config.json", required=False)
        _check_generation_config(self.generation_config, self.path / "generation_config.json")
        self.tokenizer_config = _read_json(self.path / "tokenizer_config.json", required=False)
        tok = self.path / "tokenizer.json"
        if not tok.exists():
            raise BuildError("file is missing (the bundle needs an HF fast tokenizer)", tok)
        self.tokenizer_json = _read_text(tok)
        self._files: dict[Path, SafetensorsFile] = {}
        self._where: dict[str, Path] = {}
        index = self.path / "model.safetensors.index.json"
        if index.exists():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict):
                raise BuildError("has no weight_map", index)
            for name, fname in weight_map.items():
                self._where[name] = self.path / fname
            for f in sorted(set(self._where.values())):
                if not f.exists():
                    raise BuildError(f"shard listed in {index.name} is missing", f)
        else:
            single = self.path / "model.safetensors"
            if not single.exists():
                raise BuildError("no model.safetensors or model.safetensors.index.json", self.path)
            self._where = {n: single for n in self._open(single).names()}
        for name, f in self._where.items():
            if name not in self._open(f).names():
                raise BuildError(f"tensor {name} listed in the index is not in this shard", f)

    def _open(self, f: Path) -> SafetensorsFile:
        if f not in self._files:
            self._files[f] = SafetensorsFile(f)
        return self._files[f]

    def tensor_names(self) -> list[str]:
        return list(self._where)

    def tensor_shape(self, name: str) -> tuple[int, ...]:
        return self._open(self._where[name]).shape(name)

    def read(self, name: str) -> np.ndarray:
        return self._open(self._where[name]).read(name)

    def where(self, name: str) -> str:
        return str(self._where.get(name, self.path))
