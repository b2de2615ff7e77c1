"""Constrained decoding with xgrammar: token bitmasks of a grammar, for the sampler's step 0.

The JS engine uses xgrammar's web build (web/src/grammar.js, npm @mlc-ai/web-xgrammar 0.1.27)
built from the same source as the PyPI xgrammar 0.1.27 this module pins, so one grammar gives
the same masks, and one request and seed the same tokens, in both (tests/test_structured_output.py
compares them on the real SmolLM2 vocabulary).

A `GrammarSpec` says what to compile: a JSON schema (compact JSON: no free whitespace, so a
small model cannot loop on newlines; no properties beyond the schema's), an EBNF grammar, or an
xgrammar structural tag, or "tags": a JSON schema between fixed begin/end strings (the tool-call
grammars, tool_calls.py). `Grammars` compiles specs for
one tokenizer (cached by xgrammar); a `Guide` walks one completion: `mask()` for the next
token, `advance(tok)` to accept a token and compute the following mask, on a helper thread
while the model runs its step when `overlap` is on.
"""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

import numpy as np

XGRAMMAR_VERSION = "0.1.27"  # the web build's version too (web/package.json)
INSTALL_HINT = f"pip install 'webllm-py[structured]' (xgrammar=={XGRAMMAR_VERSION})"


class GrammarUnavailableError(ValueError):
    """xgrammar is not installed (it is an optional dependency)."""


@dataclass(frozen=True)
class GrammarSpec:
    """What to compile: `kind` and its source text; `field` names the request field for errors."""

    kind: Literal["json_schema", "ebnf", "structural_tag", "tags"]
    source: str
    field: str


def _xgrammar() -> Any:
    try:
        import xgrammar  # noqa: PLC0415 - optional and slow to import (it imports torch)
    except ImportError as e:
        raise GrammarUnavailableError(f"structured output needs the grammar engine xgrammar, which is not "
                                      f"installed: {INSTALL_HINT} ({e.msg})") from None
    from importlib.metadata import version  # noqa: PLC0415

    have = version("xgrammar")
    if have != XGRAMMAR_VERSION:  # another version may give other masks than the browser's build
        raise GrammarUnavailableError(f"xgrammar {have} is installed, but the browser engine's masks are "
                                      f"those of {XGRAMMAR_VERSION}: {INSTALL_HINT}")
    return xgrammar


def vocab_metadata(tokenizer_json: dict[str, Any]) -> tuple[str, bool]:
    """(vocab type, add_prefix_space) of an HF tokenizer.json, for xgrammar's TokenizerInfo:
    "byte_level" (GPT-2 style byte-to-unicode tokens), "byte_fallback" (sentencepiece with
    <0xAB> byte tokens) or "raw"; add_prefix_space when the pre-tokenizer/normalizer prepends
    "▁" (sentencepiece). The JS port (grammar.js vocabMetadata) is the same rule."""
    def kinds(node: Any) -> list[str]:
        if not isinstance(node, dict):
            return []
        out = [str(node.get("type"))]
        for key in ("decoders", "pretokenizers", "normalizers"):
            for sub in node.get(key) or []:
                out += kinds(sub)
        return out

    dec = kinds(tokenizer_json.get("decoder"))
    if "ByteLevel" in dec:
        vt = "byte_level"
    elif "ByteFallback" in dec:
        vt = "byte_fallback"
    else:
        vt = "raw"
    prefix = False
    for node in (tokenizer_json.get("normalizer"), tokenizer_json.get("pre_tokenizer")):
        stack = [node]
        while stack:
            n = stack.pop()
            if not isinstance(n, dict):
                continue
            if n.get("type") == "Prepend" and n.get("prepend") == "▁":
                prefix = True
            if n.get("type") == "Metaspace" and (n.get("prepend_scheme") in ("always", "first") or n.get("add_prefix_space") is True):
                prefix = True
            for key in ("normalizers", "pretokenizers"):
                stack += n.get(key) or []
    return vt, prefix


_CPP_PREFIX = re.compile(r"^\[[0-9:]+\] \S+:\d+: (Check failed: \(.*?\) is false: )?")


def compile_error_text(e: BaseException) -> str:
    """xgrammar's error as one line without its C++ source location."""
    first = next((ln for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
    return _CPP_PREFIX.sub("", first).strip()[:200]


class Guide:
    """One completion's walk through a compiled grammar (an xgrammar GrammarMatcher)."""

    overlap = True  # compute the next mask on a helper thread while the model steps (bench/ turns it off)
    _pool: ThreadPoolExecutor | None = None

    def __init__(self, xgr: Any, compiled: Any, vocab_size: int):
        self._xgr = xgr
        self._m = xgr.GrammarMatcher(compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, vocab_size)
        self._pending: Future | None = None
        self._mask: np.ndarray | None = None
        self.mask_seconds = 0.0  # CPU time spent in accept + fill (the bench reports it per token)
        self.tokens = 0  # tokens accepted

    def _fill(self) -> np.ndarray:
        self._m.fill_next_token_bitmask(self._bitmask)
        return self._bitmask.numpy()[0].copy()

    def mask(self) -> np.ndarray:
        """The int32 bitmask of the tokens the grammar allows next (waits for a pending advance)."""
        if self._pending is not None:
            self._mask, self._pending = self._pending.result(), None
        if self._mask is None:
            self._mask = self._timed(self._fill)
        if not self._mask.any():  # a vocabulary that cannot spell what the grammar requires next
            raise ValueError(f"the grammar allows no token of this model's vocabulary after {self.tokens} tokens")
        return self._mask

    def _timed(self, fn: Any, *args: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.mask_seconds += time.perf_counter() - t

    def _accept_and_fill(self, tok: int) -> np.ndarray:
        if not self._m.accept_token(int(tok)):
            # cannot happen for a token the mask allowed; a bug, not a user error
            raise RuntimeError(f"the grammar rejected token {tok} that its own mask allowed")
        return self._fill()

    def advance(self, tok: int) -> None:
        """Accept `tok`; the next mask is computed now, or on the helper thread with `overlap`."""
        self._mask = None
        self.tokens += 1
        if Guide.overlap:
            if Guide._pool is None:
                Guide._pool = ThreadPoolExecutor(1, thread_name_prefix="webllm-grammar")
            self._pending = Guide._pool.submit(self._timed, self._accept_and_fill, tok)
        else:
            self._mask = self._timed(self._accept_and_fill, tok)

    def close(self) -> None:
        """Wait for a pending advance (the matcher must not be used by two threads)."""
        if self._pending is not None:
            self._pending.result()
            self._pending = None


class Grammars:
    """Compiles GrammarSpecs for one tokenizer (vocab, stop ids) into Guides."""

    def __init__(self, vocab: Sequence[str], tokenizer_json: dict[str, Any], vocab_size: int, stop_ids: Iterable[int]):
        xgr = _xgrammar()
        vt, prefix = vocab_metadata(tokenizer_json)
        self._xgr = xgr
        self.vocab_size = int(vocab_size)
        info = xgr.TokenizerInfo(list(vocab), getattr(xgr.VocabType, vt.upper()), vocab_size=self.vocab_size,
                                 stop_token_ids=sorted(set(int(t) for t in stop_ids)), add_prefix_space=prefix)
        self._compiler = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=True)

    def compile(self, spec: GrammarSpec) -> Any:
        """The compiled grammar; ValueError naming spec.field when it cannot compile."""
        c = self._compiler
        try:
            if spec.kind == "json_schema":
                return c.compile_json_schema(spec.source, any_whitespace=False, strict_mode=True)
            if spec.kind == "ebnf":
                return c.compile_grammar(spec.source)
            if spec.kind == "tags":
                return c.compile_grammar(self._tags_ebnf(json.loads(spec.source)))
            return c.compile_structural_tag(spec.source)
        except (RuntimeError, ValueError, TypeError) as e:
            what = {"json_schema": "schema", "ebnf": "grammar", "structural_tag": "tool grammar", "tags": "tool grammar"}[spec.kind]
            raise ValueError(f"{spec.field}: the {what} cannot be compiled: {compile_error_text(e)}") from None

    def _tags_ebnf(self, cfg: dict[str, Any]) -> str:
        """EBNF of begin JSON end [(separator begin JSON end)*]: the JSON is xgrammar's compact
        grammar of cfg["schema"], its root renamed (grammar.js builds the same)."""
        inner = str(self._xgr.Grammar.from_json_schema(json.dumps(cfg["schema"]), any_whitespace=False, strict_mode=True))
        inner = re.sub(r"(?m)^root ::=", "tool_call ::=", inner)
        one = f"{json.dumps(cfg['begin'])} tool_call {json.dumps(cfg['end'])}"
        more = f" ({json.dumps(cfg['separator'])} {one})*" if cfg["many"] else ""
        return f"root ::= {one}{more}\n{inner}"

    def guide(self, compiled: Any) -> Guide:
        return Guide(self._xgr, compiled, self.vocab_size)


def grammars_for(tokenizer: Any, vocab_size: int, stop_ids: Iterable[int]) -> Grammars:
    """Grammars over a runtime Tokenizer (tokenizer.py): its ids' token strings and tokenizer.json."""
    raw = json.loads(tokenizer.path.read_text(encoding="utf-8"))
    n = tokenizer.vocab_size
    vocab = [tokenizer.id_to_token(i) or "" for i in range(n)]
    return Grammars(vocab, raw, vocab_size, stop_ids)
