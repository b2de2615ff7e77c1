"""Shard writer: packs weight parts into ≤ shard_bytes files with content-hashed names.

Parts are appended at PART_ALIGN-aligned offsets; a part never spans two
shards. Each shard is written under a temporary name and renamed to the first
16 hex digits of its sha256 when closed, so identical shards of two bundles
share one CDN cache entry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .manifest import PART_ALIGN


@dataclass
class PartRef:
    """Where one part lives; `file` is filled in when its shard is closed."""

    shard: int
    offset: int
    nbytes: int
    dtype: str
    shape: list[int]
    file: str = ""

    def to_json(self) -> dict:
        return {"file": self.file, "offset": self.offset, "nbytes": self.nbytes, "dtype": self.dtype, "shape": self.shape}


_DTYPE_NAMES = {np.dtype(np.uint32): "u32", np.dtype(np.float16): "f16", np.dtype(np.float32): "f32"}


@dataclass
class ShardWriter:
    folder: Path  # the bundle's params/ folder
    shard_bytes: int
    _index: int = 0
    _fh: object = None
    _hash: object = None
    _size: int = 0
    _refs: list[PartRef] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # closed shard paths, relative to the bundle

    def add(self, arr: np.ndarray) -> PartRef:
        data = memoryview(np.ascontiguousarray(arr)).cast("B")  # no copy of the tensor
        pad = -self._size % PART_ALIGN
        if self._fh is not None and self._size + pad + len(data) > self.shard_bytes:
            self._close()
            pad = 0
        if self._fh is None:
            self._open()
        self._write(b"\0" * pad)
        ref = PartRef(self._index, self._size, len(data), _DTYPE_NAMES[arr.dtype], list(arr.shape))
        self._write(data)
        self._refs.append(ref)
        return ref

    def finish(self) -> None:
        if self._fh is not None:
            self._close()

    def _open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fh = open(self._tmp_path(), "wb")
        self._hash = hashlib.sha256()
        self._size = 0

    def _write(self, b: bytes | memoryview) -> None:
        if b:
            self._fh.write(b)
            self._hash.update(b)
            self._size += len(b)

    def _tmp_path(self) -> Path:
        return self.folder / f".shard-{self._index}.part"

    def _close(self) -> None:
        self._fh.close()
        name = f"params/{self._hash.hexdigest()[:16]}.bin"
        if (self.folder.parent / name).exists():  # two identical shards: keep one file
            self._tmp_path().unlink()
        else:
            self._tmp_path().rename(self.folder.parent / name)
        for ref in self._refs:
            if ref.shard == self._index:
                ref.file = name
        if name not in self.files:
            self.files.append(name)
        self._fh = None
        self._index += 1
