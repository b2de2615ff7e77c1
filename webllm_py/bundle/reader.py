"""Bundle reader: open a bundle folder, check its version, validate the manifest, verify files, read params."""

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
from .validate import validate_manifest

_NP_DTYPES = {"u32": np.uint32, "f16": np.float16, "f32": np.float32}


class Bundle:
    """A bundle on disk whose manifest is consistent with itself (bundle/validate.py).

    `verify()` checks every file's size and sha256 against the manifest; the validation
    relies on it for what the files hold (it checks only what the manifest says)."""

    def __init__(self, path: str | Path):
        self.dir = Path(path)
        mpath = self.dir / "manifest.json"
        if not self.dir.is_dir():
            raise BundleError("no such bundle folder" if not self.dir.exists() else "is a file, not a bundle folder",
                              self.dir)
        if not mpath.is_file():
            raise BundleError("no manifest.json: not a webllm-py bundle folder", self.dir)
        try:
            self.manifest: dict[str, Any] = json.loads(mpath.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"manifest is not valid JSON ({e})", mpath) from None
        except RecursionError:  # e.g. 100000 nested lists: Python's JSON decoder recurses
            raise BundleError("manifest is not valid JSON (nested too deeply)", mpath) from None
        except OSError as e:
            raise BundleError(f"cannot read the manifest ({e.strerror})", mpath) from None
        if not isinstance(self.manifest, dict):
            raise BundleError(f"manifest is not a JSON object (it is a {type(self.manifest).__name__})", mpath)
        check_version(self.manifest, mpath)
        validate_manifest(self.manifest, mpath)
        self._files = {f["path"]: f for f in self.manifest["files"]}

    def verify(self, progress: bool = False) -> None:
        total = sum(f["size"] for f in self._files.values())
        with progress_bar(total, "verify", enabled=progress) as bar:
            for rel, f in self._files.items():
                path = self.dir / rel
                if not path.is_file():
                    raise IntegrityError("file listed in the manifest is missing (or not a file)", path)
                if path.stat().st_size != f["size"]:
                    raise IntegrityError(f"size {path.stat().st_size} != manifest's {f['size']}", path)
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                        bar.update(len(block))
                if h.hexdigest() != f["sha256"]:
                    raise IntegrityError("sha256 does not match the manifest (corrupted or replaced file)", path)

    def _open(self, rel: str):
        # only paths the manifest validation accepted (relative, inside the bundle, listed)
        try:
            return open(self.dir / rel, "rb")
        except OSError as e:  # with verify=False a listed file may be missing
            raise IntegrityError(f"cannot read this file listed in the manifest ({e.strerror})", self.dir / rel) from None

    def read_text(self, rel: str) -> str:
        """A listed text file (a kernel's WGSL), decoded as UTF-8."""
        with self._open(rel) as fh:
            data = fh.read()
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError("is not UTF-8 text (corrupted or replaced file)", self.dir / rel) from None

    def read_part(self, ref: dict[str, Any]) -> np.ndarray:
        path = self.dir / ref["file"]
        with self._open(ref["file"]) as fh:
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
