"""Manifest constants and the format-version check (docs/bundle-format.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import BundleError, BundleVersionError

FORMAT = "webllm-py-bundle"
FORMAT_VERSION = "1.0"
KNOWN_MAJOR = 1
PART_ALIGN = 256  # byte alignment of every weight part within a shard
DEFAULT_SHARD_BYTES = 32 * 1024 * 1024


def check_version(manifest: dict[str, Any], path: Path) -> None:
    """Refuse a manifest that is not a bundle or whose major format version is unknown."""
    if manifest.get("format") != FORMAT:
        raise BundleError(f"not a webllm-py bundle manifest (format={manifest.get('format')!r})", path)
    version = str(manifest.get("format_version", ""))
    try:
        major = int(version.split(".")[0])
    except ValueError:
        raise BundleError(f"bad format_version {version!r}", path) from None
    if major != KNOWN_MAJOR:
        raise BundleVersionError(
            f"bundle format version {version} is not supported by this webllm-py (knows {KNOWN_MAJOR}.x); "
            "rebuild the bundle or upgrade webllm-py",
            path,
        )
