"""Static file serving for `webllm-py serve`: bundles, the JS package and the demo page.

Everything a browser fetches from the server goes through `serve_file`, which
does what a CDN would do for a bundle:

- MIME types that browsers and `fetch()` expect (.wgsl text/wgsl, .bin
  application/octet-stream, .js text/javascript, .json application/json);
- caching: content-hashed files (params/<sha16>.bin, kernels/<sha16>.wgsl) are
  `public, max-age=31536000, immutable`; everything else (manifest.json above all,
  which names the hashed files) is `no-cache`, i.e. always revalidated;
- ETag + Last-Modified, 304 on If-None-Match / If-Modified-Since;
- Range requests decided by ranges.py (RFC 9110: 206; 416 when unsatisfiable;
  invalid ones ignored) and sent by aiohttp's FileResponse, which also sends
  large shards with sendfile();
- gzip for text types (JSON, WGSL, JS, HTML, CSS) when the client accepts it,
  compressed once per file version and kept in a small in-memory cache; never
  for .bin shards (incompressible) and never for Range requests (ranges address
  the identity bytes);
- confinement: `parse_request_path` rejects, on the raw request target before
  any decoding or normalisation, `..` in any spelling (raw, %2e%2e), encoded
  slashes (%2f), backslashes (raw or %5c), NUL, empty segments (`//`, which
  would make an absolute path) and dot-files; `resolve_under` then follows
  symlinks and refuses (403) any file whose real path leaves the served root.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import mimetypes
import os
import re
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Sequence
from urllib.parse import unquote

from aiohttp import hdrs, web
from multidict import CIMultiDict

from .ranges import UNSATISFIABLE, parse_range

IMMUTABLE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"

# Extension -> Content-Type. Python's mimetypes table varies by platform (and knows
# no .wgsl), so the types a bundle and the JS package use are pinned here.
MIME_TYPES: dict[str, str] = {
    ".wgsl": "text/wgsl; charset=utf-8",
    ".bin": "application/octet-stream",
    ".json": "application/json",
    ".map": "application/json",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".ts": "text/plain; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".svg": "image/svg+xml",
    ".wasm": "application/wasm",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".webmanifest": "application/manifest+json",
}
# Worth compressing: text. Shards are quantized weights (incompressible, and large).
COMPRESSIBLE = {".wgsl", ".json", ".map", ".js", ".mjs", ".cjs", ".ts", ".html", ".css", ".txt", ".md", ".svg",
                ".webmanifest"}

# Content-hashed bundle files (see docs/bundle-format.md): their bytes never change
# under the same name, so browsers may cache them forever.
_HASHED = re.compile(r"^(params/[0-9a-f]{16}\.bin|kernels/[0-9a-f]{16}\.wgsl)$")


def content_type(path: str | Path) -> str:
    """The Content-Type to send for a file name."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext in MIME_TYPES:
        return MIME_TYPES[ext]
    guessed = mimetypes.guess_type(str(path))[0]
    if guessed is None:
        return "application/octet-stream"
    return guessed + "; charset=utf-8" if guessed.startswith("text/") else guessed


def bundle_cache_control(rel: Sequence[str]) -> str:
    """Cache-Control for a file of a bundle, given its path segments inside the bundle."""
    return IMMUTABLE if _HASHED.match("/".join(rel)) else NO_CACHE


# ---- confinement ------------------------------------------------------------------------


def parse_request_path(raw_path: str) -> list[str] | None:
    """Decoded path segments of a raw request target, or None when it is unsafe.

    Works on `request.raw_path` (what the client sent) rather than the router's
    decoded, dot-normalised path, so `/models/x/../../etc/passwd` is refused
    instead of being silently normalised into another URL. A trailing slash gives
    a last segment "" (a directory index). Each segment is decoded exactly once;
    `%252e%252e` therefore stays the literal name `%2e%2e`, which is harmless.
    """
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return None  # absolute-form or asterisk targets: not for a file server
    low = path.lower()
    # Encoded separators and NUL: a segment must never decode into a path of its own.
    if "\\" in path or "%5c" in low or "%2f" in low or "%00" in low or "\x00" in path:
        return None
    parts = path[1:].split("/")
    out: list[str] = []
    for i, raw in enumerate(parts):
        try:
            seg = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return None
        if seg == "":
            if i == len(parts) - 1:
                out.append("")  # trailing slash
                continue
            return None  # "//": an empty segment would turn the rest into an absolute path
        # "." and ".." (in any spelling, since this is after decoding), and dot-files (.git, .env)
        if seg.startswith(".") or any(c in seg for c in "/\\\x00") or re.match(r"^[A-Za-z]:", seg):
            return None
        out.append(seg)
    return out


def resolve_under(root: Path, rel: Sequence[str]) -> Path:
    """The real path of `root/rel...`, following symlinks; 403 when it leaves `root`.

    `root` must already be a real path (`os.path.realpath`). Does not check that
    the file exists.
    """
    real = Path(os.path.realpath(root.joinpath(*rel)))
    if real != root and root not in real.parents:
        raise web.HTTPForbidden(text="403: outside the served folder\n")
    return real


# ---- responses --------------------------------------------------------------------------


def _etag(st: os.stat_result) -> str:
    # The same value aiohttp's FileResponse computes, so both paths agree.
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"


def _http_seconds(st: os.stat_result) -> int:
    # aiohttp writes Last-Modified as ceil(mtime): what clients echo back in If-* headers.
    return math.ceil(st.st_mtime)


def _accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header allows gzip (an explicit q=0 refuses it)."""
    q: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        name, _, params = item.strip().partition(";")
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        try:
            q[name.strip()] = float(m.group(1)) if m else 1.0
        except ValueError:
            q[name.strip()] = 0.0
    for name in ("gzip", "x-gzip", "*"):  # an explicit entry beats the wildcard
        if name in q:
            return q[name] > 0
    return False


def _not_modified(request: web.Request, st: os.stat_result, etags: Sequence[str]) -> str | None:
    """The ETag to answer 304 with, or None when the client's copy is stale.

    If-None-Match wins over If-Modified-Since (RFC 9110 13.1.3). Dates are
    compared in whole seconds against the Last-Modified we send (`_http_seconds`).
    Decided here rather than by FileResponse so that the gzip representation, which
    FileResponse does not produce, follows the same rules.
    """
    inm = request.if_none_match
    if inm is not None:
        for tag in inm:
            if tag.value == "*":
                return etags[0]
            if tag.value in etags:
                return tag.value
        return None
    ims = request.if_modified_since
    if ims is not None and _http_seconds(st) <= ims.timestamp():
        return etags[0]
    return None


def _range_applies(request: web.Request, st: os.stat_result, etag: str) -> bool:
    """Whether to honour the request's Range header (RFC 9110 13.1.5, 14.2).

    If-Range is decided here because aiohttp only understands its date form (an
    ETag there, which browsers send when resuming, is ignored and the range served
    even if the file changed) and compares that date with the fractional mtime.
    What the range itself means is ranges.parse_range's business.
    """
    if hdrs.RANGE not in request.headers:
        return False
    cond = request.headers.get(hdrs.IF_RANGE)
    if cond is None:
        return True
    cond = cond.strip()
    if cond.startswith('"') or cond.startswith("W/"):
        return cond == f'"{etag}"'  # strong comparison: a weak tag never matches
    date = request.if_range
    return date is not None and _http_seconds(st) == int(date.timestamp())


class _IdentityFileResponse(web.FileResponse):
    """FileResponse that never substitutes a `<file>.gz` / `<file>.br` sidecar, and that
    sends the byte range decided here (`_range_applies`, ranges.parse_range) or the
    whole file: it only ever sees a canonical `Range: bytes=FIRST-LAST`, never the
    client's header (aiohttp reads `bytes=-0` as the whole file, answers 416 to
    headers it should ignore, and raises on 5000-digit positions).

    Compression is this module's decision (with its own ETag per encoding); a stray
    sidecar next to a shard must not change what a URL returns.
    """

    def __init__(self, path: Path, headers: dict[str, str], byte_range: tuple[int, int] | None):
        super().__init__(path, headers=headers)
        self._byte_range = byte_range

    def _get_file_path_stat_encoding(self, accept_encoding: str):  # type: ignore[override]
        return super()._get_file_path_stat_encoding("")

    async def prepare(self, request: web.BaseRequest):  # type: ignore[override]
        drop = {"if-range", "range"}
        if self._byte_range is not None or any(h in request.headers for h in drop):
            # A clone shares the connection and writer; only FileResponse's view of the headers changes.
            headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in drop)
            if self._byte_range is not None:
                headers[hdrs.RANGE] = "bytes=%d-%d" % self._byte_range
            request = request.clone(headers=headers)
        return await super().prepare(request)


class GzipCache:
    """gzip bytes of recently served text files, keyed by (path, mtime, size), bounded in bytes."""

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int], bytes] = OrderedDict()
        self._size = 0

    async def get(self, path: Path, st: os.stat_result) -> bytes:
        key = (str(path), st.st_mtime_ns, st.st_size)
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
            return data
        # Compressing a multi-MB tokenizer.json takes a while: not on the event loop.
        data = await asyncio.get_running_loop().run_in_executor(None, _gzip_file, path)
        if len(data) <= self.max_bytes:
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
        return data


def _gzip_file(path: Path) -> bytes:
    # mtime=0: the same file always compresses to the same bytes.
    return gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)


async def serve_file(request: web.Request, root: Path, rel: Sequence[str], cache_control: str,
                     gzip_cache: GzipCache) -> web.StreamResponse:
    """Serve `root/rel` (root: a real path) with the caching, Range, gzip and confinement rules above."""
    path = resolve_under(root, rel)
    try:
        st = path.stat()
    except (OSError, ValueError):  # ValueError: a name the OS cannot represent
        raise web.HTTPNotFound(text="404: not found\n")
    if not stat.S_ISREG(st.st_mode):
        raise web.HTTPNotFound(text="404: not found\n")

    ctype = content_type(path)
    compressible = path.suffix.lower() in COMPRESSIBLE
    headers = {
        hdrs.CONTENT_TYPE: ctype,
        hdrs.CACHE_CONTROL: cache_control,
        "X-Content-Type-Options": "nosniff",
    }
    if compressible:
        # The body depends on Accept-Encoding: caches must key on it.
        headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
    etag = _etag(st)
    use_gzip = (compressible and hdrs.RANGE not in request.headers
                and _accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, "")))
    # A gzip body is a different representation: it gets its own ETag.
    etags = [etag + "-gz", etag] if use_gzip else [etag]

    match = _not_modified(request, st, etags)
    if match is not None:
        resp = web.Response(status=304, headers=headers)
        del resp.headers[hdrs.CONTENT_TYPE]  # 304 has no body; keep the validators and caching headers
        resp.etag = match
        resp.last_modified = st.st_mtime
        return resp

    if not use_gzip:
        rng = parse_range(request.headers[hdrs.RANGE], st.st_size) if _range_applies(request, st, etag) else None
        if rng == UNSATISFIABLE:
            return web.Response(status=416, headers={
                hdrs.CONTENT_RANGE: f"bytes */{st.st_size}", hdrs.ACCEPT_RANGES: "bytes",
                "X-Content-Type-Options": "nosniff"})
        return _IdentityFileResponse(path, headers, rng if isinstance(rng, tuple) else None)

    body = await gzip_cache.get(path, st)
    resp = web.Response(body=body, headers=headers)
    resp.headers[hdrs.CONTENT_ENCODING] = "gzip"
    resp.etag = etags[0]
    resp.last_modified = st.st_mtime
    return resp
