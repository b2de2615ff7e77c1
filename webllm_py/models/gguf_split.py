"""Split GGUF files (llama.cpp's gguf-split: NAME-00001-of-00003.gguf, ...) opened as one model.

Every split carries `split.no` (u16, from 0), `split.count` (u16) and `split.tensors.count` (i32,
the tensors of all splits together) in its metadata; the first split holds the model's metadata
(later ones usually only the three split keys) and each split holds its own tensors. The other
files are found the way llama.cpp's loader finds them (llama_split_prefix / llama_split_path):
the path given, less its "-%05d-of-%05d.gguf" suffix for its own split.no and split.count, is the
prefix of every split's name. Any split's path may be given, or the folder (`gguf_in_folder`) when it
holds one model; the model is read from the first split.

Every split is opened and checked before anything is read, so a bad set fails in one line
naming the file and the problem (and the writer never starts): a missing file, split.no not
the file's place, split.count or split.tensors.count disagreeing, a tensor in two splits, a
metadata key both files have with different values (a split of another model), or the tensor
total not split.tensors.count. A file without split keys is a whole model on its own.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable

from ..errors import BuildError

SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS = "split.no", "split.count", "split.tensors.count"
SPLIT_KEYS = (SPLIT_NO, SPLIT_COUNT, SPLIT_TENSORS)
_LATER_SPLIT = re.compile(r".+-(?!00001-)\d{5}-of-\d{5}\.gguf")  # a split other than the first, by its name


_SPLIT_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


def model_stem(path: Path) -> str:
    """The model's name from one of its files: the stem less a split suffix ("m-00001-of-00003" -> "m")."""
    return _SPLIT_SUFFIX.sub("", path.stem)


def split_name(prefix: str, no: int, count: int) -> str:
    """llama_split_path: the file name of split `no` (from 0) of `count`."""
    return f"{prefix}-{no + 1:05d}-of-{count:05d}.gguf"


def _index(meta: dict[str, Any], key: str, path: Path, lo: int) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise BuildError(f"split metadata key '{key}' must be an integer >= {lo}, got {v!r}", path)
    return v


def open_splits(path: Path, open_reader: Callable[[Path], Any],
                meta_of: Callable[[Any], dict[str, Any]]) -> list[tuple[Path, Any, dict[str, Any]]]:
    """[(path, reader, metadata)] of every split of the model `path` belongs to, first split first;
    [(path, reader, metadata)] alone for an unsplit file. `open_reader` opens and checks one file,
    `meta_of` gives a reader's metadata as Python values."""
    reader = open_reader(path)
    meta = meta_of(reader)
    if SPLIT_COUNT not in meta and SPLIT_NO not in meta:
        return [(path, reader, meta)]
    count = _index(meta, SPLIT_COUNT, path, 1)
    no = _index(meta, SPLIT_NO, path, 0)
    if no >= count:
        raise BuildError(f"split.no {no} is not below split.count {count}", path)
    suffix = split_name("", no, count)
    if not path.name.endswith(suffix) or len(path.name) == len(suffix):
        raise BuildError(f"the name of split {no + 1} of {count} must end in '{suffix}' (llama.cpp's gguf-split "
                         "naming), which is how the other splits are found; rename it", path)
    prefix = path.name[: -len(suffix)]
    parts: list[tuple[Path, Any, dict[str, Any]]] = []
    for i in range(count):
        p = path.with_name(split_name(prefix, i, count))
        if i == no:
            parts.append((path, reader, meta))
            continue
        if not p.is_file():
            raise BuildError(f"split {i + 1} of {count} is missing (every split of {prefix}-*-of-{count:05d}.gguf "
                             "must be in the same folder)", p)
        r = open_reader(p)
        parts.append((p, r, meta_of(r)))
    _check(parts, count)
    return parts


def _check(parts: list[tuple[Path, Any, dict[str, Any]]], count: int) -> None:
    first_path, _, first = parts[0]
    total = _index(first, SPLIT_TENSORS, first_path, 0)
    seen: dict[str, Path] = {}
    for i, (p, reader, meta) in enumerate(parts):
        if SPLIT_NO not in meta:
            raise BuildError(f"missing metadata key '{SPLIT_NO}': not a split of {first_path.name}", p)
        if _index(meta, SPLIT_NO, p, 0) != i:
            raise BuildError(f"split.no is {meta[SPLIT_NO]}, but the file name says split {i + 1} of {count} "
                             f"(split.no {i}): the splits are out of order", p)
        for key in (SPLIT_COUNT, SPLIT_TENSORS):
            if meta.get(key) != first.get(key):
                raise BuildError(f"{key} is {meta.get(key)!r}, but {first_path.name} says {first.get(key)!r}: "
                                 "not a split of the same model", p)
        for key, v in meta.items():
            if key not in SPLIT_KEYS and key in first and first[key] != v:
                raise BuildError(f"metadata key '{key}' differs from {first_path.name}'s: not a split of the same "
                                 "model", p)
        for t in reader.tensors:
            if t.name in seen:
                raise BuildError(f"tensor '{t.name}' is in {seen[t.name].name} too: each tensor must be in one "
                                 "split", p)
            seen[t.name] = p
    if len(seen) != total:
        raise BuildError(f"the {count} splits hold {len(seen)} tensors, but split.tensors.count is {total} "
                         "(a split of another model, or one cut short?)", first_path)


def gguf_in_folder(folder: Path) -> Path | None:
    """The one GGUF model in a folder that is not an HF model folder (no config.json): its single
    .gguf file or its first split; None when the folder holds no .gguf (or is an HF folder)."""
    if (folder / "config.json").exists():
        return None
    models = [p for p in sorted(folder.glob("*.gguf")) if not _LATER_SPLIT.fullmatch(p.name)]
    if len(models) > 1:
        raise BuildError(f"the folder holds {len(models)} GGUF models ({', '.join(p.name for p in models[:4])}); "
                         "pass the file (or first split) to build", folder)
    return models[0] if models else None
