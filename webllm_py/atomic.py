"""Atomic folder output: build in a temporary folder beside the target, rename when complete.

Used by `build` and `publish`, so a failure never leaves a half-written folder and
never destroys the folder that was there before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def temp_dir_beside(out: Path) -> Path:
    """A new empty folder next to `out`, with the permissions a normal mkdir would give."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it 0700; bundles and sites are meant to be served
    return tmp


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder into place; an old folder at `out` is removed only afterwards."""
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
