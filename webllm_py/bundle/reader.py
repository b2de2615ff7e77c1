"""Bundle reader: open a bundle folder, check its version, verify files, read params."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, IntegrityError
from ..progress import progress_bar
from ..quant import dequantize
from .manifest import check_version

_NP_DTYPES = {"u32": np.uint32, "f16": np.float16, "f32": np.float32}


class Bundle:
    """A bundle on disk. `verify()` checks every file's size and sha256 against the manifest."""

    def __init__(self, path: str | Path):
        self.dir = Path(path)
        mpath = self.dir / "manifest.json"
        if not mpath.exists():
            raise BundleError("no manifest.json: not a webllm-py bundle folder", self.dir)
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"manifest is not valid JSON ({e})", mpath) from None
        check_version(self.manifest, mpath)
        self._files = {f["path"]: f for f in self.manifest["files"]}

    def verify(self, progress: bool = False) -> None:
        total = sum(f["size"] for f in self._files.values())
        with progress_bar(total, "verify", enabled=progress) as bar:
            for rel, f in self._files.items():
                path = self.dir / rel
                if not path.exists():
                    raise IntegrityError("file listed in the manifest is missing", path)
                if path.stat().st_size != f["size"]:
                    raise IntegrityError(f"size {path.stat().st_size} != manifest's {f['size']}", path)
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                        bar.update(len(block))
                if h.hexdigest() != f["sha256"]:
                    raise IntegrityError("sha256 does not match the manifest (corrupted or replaced file)", path)

    def read_part(self, ref: dict[str, Any]) -> np.ndarray:
        path = self.dir / ref["file"]
        with open(path, "rb") as fh:
            fh.seek(ref["offset"])
            raw = fh.read(ref["nbytes"])
        if len(raw) != ref["nbytes"]:
            raise IntegrityError(f"truncated: part at {ref['offset']} needs {ref['nbytes']} bytes", path)
        return np.frombuffer(raw, dtype=_NP_DTYPES[ref["dtype"]]).reshape(ref["shape"])

    def read_param(self, name: str) -> np.ndarray:
        """A param dequantized to float32 in its logical shape."""
        w = self.manifest["weights"][name]
        parts = {k: self.read_part(r) for k, r in w["parts"].items()}
        shape = tuple(w["shape"])
        if len(shape) != 2:
            return parts["data"].astype(np.float32).reshape(shape)
        return dequantize(parts, w["format"], shape)
