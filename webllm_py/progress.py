"""Progress bars for long work (build, verify, download), off when not wanted."""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


@contextlib.contextmanager
def progress_bar(total: int, desc: str, *, enabled: bool = True, unit: str = "B") -> Iterator:
    """A tqdm bar on stderr, or a no-op when disabled."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    scale = unit == "B"
    with tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024 if scale else 1000,
              file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        yield bar
