"""argparse `type=` validators for the command line.

Each factory returns a function that turns an option's string into a checked
value or raises ArgumentTypeError with a short reason; argparse prefixes it with
the option's name, so a bad value is one line such as
`webllm-py serve: error: argument --port: must be an integer in 0..65535, got '70000'`.
Checking at parse time means nothing is loaded or written before the refusal.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, NamedTuple, Sequence


def _range_text(lo: float | None, hi: float | None, lo_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in ({lo}, {hi}]" if lo_open else f"in {lo}..{hi}"
    if lo is not None:
        return f"> {lo}" if lo_open else f">= {lo}"
    return f"<= {hi}" if hi is not None else ""


def int_in(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An integer in lo..hi (either end open when None)."""
    want = f"an integer {_range_text(lo, hi)}".strip()

    def parse(s: str) -> int:
        try:
            v = int(s, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {s!r}") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {want}, got {s!r}")
        return v

    parse.__name__ = "integer"
    return parse


def float_in(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """A finite number in [lo, hi] ((lo, hi] with lo_open); nan and inf are refused."""
    want = f"a finite number {_range_text(lo, hi, lo_open)}".strip()

    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {want}, got {s!r}") from None
        too_low = lo is not None and (v <= lo if lo_open else v < lo)
        if not math.isfinite(v) or too_low or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {want}, got {s!r}")
        return v

    parse.__name__ = "number"
    return parse


def port(allow_zero: bool = True) -> Callable[[str], int]:
    """A TCP port; 0 asks the OS for a free one where a server allows it."""
    return int_in(0 if allow_zero else 1, 65535)


def comma_list(choices: Sequence[str]) -> Callable[[str], list[str]]:
    """A comma-separated, non-empty list of distinct names from `choices`."""

    def parse(s: str) -> list[str]:
        items = [x.strip() for x in s.split(",")]
        bad = [x for x in items if x not in choices]
        if bad or not items or len(set(items)) != len(items):
            raise argparse.ArgumentTypeError(
                f"must be distinct names from {', '.join(choices)} separated by commas, got {s!r}")
        return items

    parse.__name__ = "list"
    return parse


class TextFile(NamedTuple):
    path: str
    text: str


def utf8_text_file(s: str) -> TextFile:
    """A readable, non-empty UTF-8 file and its text (read here, so a bad file is refused up front)."""
    p = Path(s)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise argparse.ArgumentTypeError(f"{s}: cannot read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise argparse.ArgumentTypeError(f"{s}: not a UTF-8 text file (invalid byte at offset {e.start})") from None
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{s}: the file is empty")
    return TextFile(s, text)


def nonempty(s: str) -> str:
    """A string that is not empty or only whitespace (an empty prompt has nothing to continue)."""
    if not s.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return s
