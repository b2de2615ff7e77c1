"""Range requests of `webllm-py serve` at their edges (issue 15), per RFC 9110
(14.1.2, 14.2, 15.5.17): unsatisfiable ranges (`bytes=-0` above all, which used to
answer 206 with the whole file) are 416 with `Content-Range: bytes */SIZE`;
invalid ones and foreign units are ignored (200, the whole file); positions of
any length are handled (a 5000-digit position used to reach int()).
"""

from __future__ import annotations

import pytest

from webllm_py.serve import make_app, start_in_thread
from webllm_py.serve.ranges import UNSATISFIABLE, parse_range

from serve_fakes import request


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("range-site")
    data = bytes(range(256)) * 4  # 1024 bytes
    (root / "data.bin").write_bytes(data)
    (root / "empty.bin").write_bytes(b"")
    with start_in_thread(make_app({"f": root})) as srv:
        yield srv.port, data


N = 1024
# Range header -> (status, body slice or None for the whole file, Content-Range)
RANGE_CASES = {
    "bytes=-0": (416, b"", f"bytes */{N}"),  # a zero-length suffix is unsatisfiable
    "bytes=1024-": (416, b"", f"bytes */{N}"),
    "bytes=5000-6000": (416, b"", f"bytes */{N}"),
    "bytes=" + "9" * 5000 + "-": (416, b"", f"bytes */{N}"),
    "bytes=0-": (206, slice(0, N), f"bytes 0-{N - 1}/{N}"),
    "bytes=0-0": (206, slice(0, 1), f"bytes 0-0/{N}"),
    "bytes=-1": (206, slice(N - 1, N), f"bytes {N - 1}-{N - 1}/{N}"),
    "bytes=-5000": (206, slice(0, N), f"bytes 0-{N - 1}/{N}"),  # a suffix longer than the file: all of it
    "bytes=-" + "9" * 5000: (206, slice(0, N), f"bytes 0-{N - 1}/{N}"),
    "bytes=1000-99999": (206, slice(1000, N), f"bytes 1000-{N - 1}/{N}"),  # last-pos clamped
    "bytes=0-" + "9" * 5000: (206, slice(0, N), f"bytes 0-{N - 1}/{N}"),
    "Bytes=10-19": (206, slice(10, 20), f"bytes 10-19/{N}"),  # the unit is case-insensitive
    "bytes=0010-0019": (206, slice(10, 20), f"bytes 10-19/{N}"),
    # invalid or not ours: ignored, the whole file (RFC 9110 14.2 allows ignoring; a foreign unit MUST be)
    "bytes=5-2": (200, slice(0, N), None),
    "items=0-5": (200, slice(0, N), None),
    "bytes=abc": (200, slice(0, N), None),
    "bytes=": (200, slice(0, N), None),
    "bytes=-": (200, slice(0, N), None),
    "bytes=1-2-3": (200, slice(0, N), None),
    "bytes=+1-2": (200, slice(0, N), None),
    "bytes=\u0661-\u0662": (200, slice(0, N), None),  # Arabic-Indic digits are not DIGIT
    "bytes=0-3,8-9": (200, slice(0, N), None),  # multi-range: answered whole, as before
}


@pytest.mark.parametrize("rng", list(RANGE_CASES), ids=lambda r: r[:24])
def test_range_edge_cases(files, rng):
    port, data = files
    status, want, crange = RANGE_CASES[rng]
    s, h, body = request(port, "GET", "/models/f/data.bin", headers={"Range": rng.encode("utf-8").decode("latin-1")})
    assert s == status, (rng, s)
    assert h.get("Content-Range") == crange, (rng, h.get("Content-Range"))
    assert body == (data[want] if isinstance(want, slice) else want), rng


@pytest.mark.parametrize("rng", ["bytes=0-", "bytes=-5", "bytes=0-0"])
def test_range_on_an_empty_file_is_unsatisfiable(files, rng):
    port, _ = files
    s, h, body = request(port, "GET", "/models/f/empty.bin", headers={"Range": rng})
    assert (s, h.get("Content-Range"), body) == (416, "bytes */0", b""), rng


def test_parse_range_unit():
    assert parse_range("bytes=0-9", 5) == (0, 4)
    assert parse_range("bytes=-9", 5) == (0, 4)
    assert parse_range("bytes=4-", 5) == (4, 4)
    assert parse_range("bytes=5-", 5) == UNSATISFIABLE
    assert parse_range("bytes=-0", 5) == UNSATISFIABLE
    assert parse_range("bytes=-1", 0) == UNSATISFIABLE
    assert parse_range("bytes = 1-2", 5) == (1, 2)  # whitespace around "=": tolerated
    for ignored in ("bytes=2-1", "pages=1-2", "bytes", "bytes=1-2,3-4", "bytes=--1", "bytes=0x1-2", ""):
        assert parse_range(ignored, 5) is None, ignored
