"""Atomic folder output: build in a temporary folder beside the target, rename when complete.

Used by `build` and `publish`, so a failure never leaves a half-written folder and
never destroys the folder that was there before. A process killed mid-write (SIGKILL,
power loss) cannot clean up: its temp folder is named `.<out>.tmp-<pid>.<host>-<random>`,
and the next write into the same parent removes such folders of dead processes on this host.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Callable

from .errors import BuildError

# containers sharing a folder have their own pid numbering: only this host's pids are judged
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_NAME = re.compile(r"\..+\.tmp-(?P<pid>[1-9][0-9]*)\.(?P<host>[0-9a-f]{8})-[a-z0-9_]+\Z")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temp_dirs(parent: Path) -> list[Path]:
    """Remove temp folders in `parent` named by temp_dir_beside whose process is dead; return them.
    Anything else (other names, other hosts, live pids, links) is left alone."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for e in entries:
        m = _TEMP_NAME.match(e.name)
        if m and m["host"] == _HOST and e.is_dir(follow_symlinks=False) and not _alive(int(m["pid"])):
            shutil.rmtree(e.path, ignore_errors=True)
            removed.append(Path(e.path))
    return removed


def refuse_to_replace(out: Path, why_not_ours: Callable[[Path], str | None], what: str) -> None:
    """BuildError unless `out` is absent, an empty folder, or a folder `why_not_ours` accepts (None)."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise BuildError(f"output exists and is not a folder, so not a {what}; refusing to replace it", out)
    if not any(out.iterdir()):
        return
    why = why_not_ours(out)
    if why is not None:
        raise BuildError(f"output exists and is not a {what} ({why}); refusing to replace it", out)


def temp_dir_beside(out: Path) -> Path:
    """A new empty folder next to `out`, with the permissions a normal mkdir would give
    (and first, the stale temp folders of dead writers removed from that parent)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_dirs(out.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}.{_HOST}-", dir=out.parent))
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
