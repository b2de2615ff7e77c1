"""Is an existing folder a webllm-py bundle that a build may replace?

Only when its manifest.json is this project's (format key, a files list) and the folder holds
nothing but manifest.json and the files that list names: a web app folder with its own
manifest.json, or a bundle someone put a page or notes into, is not ours to delete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .manifest import FORMAT

MANIFEST = "manifest.json"


def _listed_paths(manifest: object) -> set[str] | None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    if not isinstance(manifest.get("format_version"), str) or not isinstance(manifest.get("files"), list):
        return None
    paths = {f.get("path") for f in manifest["files"] if isinstance(f, dict)}
    return {p for p in paths if isinstance(p, str)}


def _entries(folder: Path) -> list[str]:
    """Every file (and link, which is never followed) under folder, '/'-separated relative paths.
    OSError when a subfolder cannot be listed: what it holds is unknown, so it is not ours."""
    out = []

    def fail(e: OSError) -> None:  # os.walk skips unreadable folders silently without this
        raise e

    for root, dirs, files in os.walk(folder, onerror=fail):
        rel = Path(root).relative_to(folder)
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d not in links]
        out.extend((rel / name).as_posix() for name in files + links)
    return out


def why_not_a_bundle(folder: Path) -> str | None:
    """None if `folder` is a webllm-py bundle (and only that); else why not, as a short phrase."""
    mpath = folder / MANIFEST
    if not mpath.is_file():
        return f"it has no {MANIFEST} file"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # ValueError covers JSON and UTF-8 errors
        return f"its {MANIFEST} is not valid JSON"
    listed = _listed_paths(manifest)
    if listed is None:
        return f"its {MANIFEST} is not a webllm-py bundle manifest"
    try:
        entries = _entries(folder)
    except OSError as e:
        return f"cannot list {json.dumps(e.filename) if e.filename else 'all its files'} ({e.strerror})"
    stray = sorted(p for p in entries if p != MANIFEST and p not in listed)
    if stray:
        more = f" and {len(stray) - 3} more" if len(stray) > 3 else ""
        return f"it holds files its {MANIFEST} does not list: {', '.join(json.dumps(p) for p in stray[:3])}{more}"
    return None
