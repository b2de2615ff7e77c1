"""Tokenizer: a thin wrapper over HF `tokenizers` plus a streaming detokenizer.

`Tokenizer` loads a bundle's tokenizer.json (+ tokenizer_config.json for the
chat template and special tokens) and offers encode/decode, the raw bytes of a
token (for logprobs) and chat-template rendering.

`StreamDetokenizer` turns token ids, pushed one at a time, into text deltas
whose concatenation is the continuation text, and never emits a partial UTF-8
character: it decodes a small sliding window of ids (the incremental scheme of
TGI/vLLM) and holds text back while the window ends in U+FFFD (an incomplete
multi-byte sequence). Seeding it with the last prompt ids keeps the leading
space of a continuation that SentencePiece-style decoders (Strip, "▁") would
otherwise drop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tokenizers import Tokenizer as _HFTokenizer

from ..errors import BundleError
from .chat_template import ChatTemplate, special_tokens_from_config

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")

# How many prompt ids give the detokenizer its initial context (vLLM uses 5).
_INITIAL_CONTEXT = 5


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-char table used by ByteLevel pre-tokenizers/decoders."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


_UNICODE_TO_BYTE = {c: b for b, c in bytes_to_unicode().items()}


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [type(e).__name__])[0][:200]


def _is_id(t: Any) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and t >= 0


def _object(v: Any, key: str, path: Path) -> Mapping[str, Any]:
    """A manifest section that must be an object when present ({} when absent)."""
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise BundleError(f"{key} must be an object, got {type(v).__name__}", path)
    return v


def _uses_byte_level(decoder: Any) -> bool:
    if not isinstance(decoder, Mapping):
        return False
    if decoder.get("type") == "ByteLevel":
        return True
    if decoder.get("type") == "Sequence":
        return any(_uses_byte_level(d) for d in decoder.get("decoders", []))
    return False


class Tokenizer:
    """HF fast tokenizer + tokenizer_config.json (chat template, special tokens)."""

    def __init__(
        self,
        tokenizer_file: str | Path,
        config: Mapping[str, Any] | None = None,
        eos_token_ids: Iterable[int] = (),
        chat_template: Any = None,
    ):
        path = Path(tokenizer_file)
        try:
            self._tok = _HFTokenizer.from_file(str(path))
            # the decoder's own JSON (cheaper than re-parsing the whole tokenizer.json)
            decoder = json.loads(self._tok.decoder.__getstate__()) if self._tok.decoder is not None else None
        except Exception as e:  # unreadable, not UTF-8 or malformed tokenizer.json (the Rust error type is not exported)
            raise BundleError(f"cannot load tokenizer: {_first_line(e)}", path) from None
        self.path = path
        self.config: dict[str, Any] = dict(config or {})
        self.eos_token_ids: list[int] = [int(t) for t in eos_token_ids]
        self._byte_level = _uses_byte_level(decoder)
        added = self._tok.get_added_tokens_decoder()
        self._added = {int(i): t.content for i, t in added.items()}
        self._special_ids = {int(i) for i, t in added.items() if t.special}
        self.special_tokens = special_tokens_from_config(self.config)
        template = chat_template if chat_template is not None else self.config.get("chat_template")
        self.chat_template: ChatTemplate | None = ChatTemplate(template, self.special_tokens) if template is not None else None
        self._bytes_cache: dict[int, bytes] = {}

    @classmethod
    def from_bundle(cls, bundle_dir: str | Path, manifest: Mapping[str, Any]) -> "Tokenizer":
        """From `bundle_dir / manifest["tokenizer"]["file"]` and `["config_file"]`.

        eos ids: manifest tokenizer.eos_token_ids ∪ generation.eos_token_ids. A
        `chat_template.jinja` next to them is used when the config has no template
        (newer HF checkpoints store it there).
        """
        bundle_dir = Path(bundle_dir)
        mpath = bundle_dir / "manifest.json"
        tk = _object(manifest.get("tokenizer"), "tokenizer", mpath)
        tok_name = tk.get("file", "tokenizer.json")
        if not isinstance(tok_name, str):
            raise BundleError(f"tokenizer.file must be a file name, got {tok_name!r}", mpath)
        tok_file = bundle_dir / tok_name
        if not tok_file.is_file():
            raise BundleError("tokenizer file missing", tok_file)
        config: dict[str, Any] = {}
        cfg_name = tk.get("config_file")
        if cfg_name:
            cfg_path = bundle_dir / str(cfg_name)
            try:
                config = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:  # ValueError: bad JSON or not UTF-8
                raise BundleError(f"cannot read tokenizer config: {_first_line(e)}", cfg_path) from None
            if not isinstance(config, dict):
                raise BundleError(f"tokenizer config must be a JSON object, got {type(config).__name__}", cfg_path)
        template = None
        jinja = bundle_dir / "chat_template.jinja"
        if config.get("chat_template") is None and jinja.is_file():
            try:
                template = jinja.read_text(encoding="utf-8")
            except (OSError, ValueError) as e:
                raise BundleError(f"cannot read chat template: {_first_line(e)}", jinja) from None
        eos: list[int] = []
        generation = _object(manifest.get("generation"), "generation", mpath)
        for key, src in (("tokenizer.eos_token_ids", tk.get("eos_token_ids")),
                         ("generation.eos_token_ids", generation.get("eos_token_ids"))):
            if src is not None and not (isinstance(src, list) and all(_is_id(t) for t in src)):
                raise BundleError(f"{key} must be a list of token ids, got {src!r}", mpath)
            for t in src or []:
                if t not in eos:
                    eos.append(t)
        return cls(tok_file, config, eos, template)

    # ---- ids <-> text -------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Size of the vocabulary including added tokens."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; add_special_tokens applies tokenizer.json's post-processor (e.g. BOS)."""
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def id_to_token(self, tid: int) -> str | None:
        return self._tok.id_to_token(int(tid))

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def is_special(self, tid: int) -> bool:
        return int(tid) in self._special_ids

    def token_bytes(self, tid: int) -> bytes:
        """The raw UTF-8 bytes a token stands for (may be part of a character).

        Byte-level BPE: the GPT-2 char->byte map; SentencePiece: "<0xNN>" byte
        fallback tokens are one byte, "▁" is a space; added tokens: their content.
        """
        tid = int(tid)
        b = self._bytes_cache.get(tid)
        if b is not None:
            return b
        if tid in self._added:
            b = self._added[tid].encode("utf-8")
        else:
            piece = self._tok.id_to_token(tid)
            if piece is None:
                b = b""
            elif self._byte_level and all(c in _UNICODE_TO_BYTE for c in piece):
                b = bytes(_UNICODE_TO_BYTE[c] for c in piece)
            elif (m := _BYTE_FALLBACK.match(piece)) is not None:
                b = bytes([int(m.group(1), 16)])
            else:
                b = piece.replace("\u2581", " ").encode("utf-8")
        self._bytes_cache[tid] = b
        return b

    def token_text(self, tid: int) -> str:
        """The token's text for logprobs (invalid partial UTF-8 shown as U+FFFD)."""
        return self.token_bytes(tid).decode("utf-8", errors="replace")

    # ---- chat ---------------------------------------------------------------

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> str:
        """The rendered prompt text (tokenize it with add_special_tokens=False)."""
        if self.chat_template is None:
            raise BundleError("the bundle's tokenizer config has no chat_template", self.path)
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt, **kwargs)

    def stream_detokenizer(self, prompt_ids: Sequence[int] = ()) -> "StreamDetokenizer":
        return StreamDetokenizer(self, prompt_ids)


class StreamDetokenizer:
    """Incremental decoding of generated ids into complete-character text deltas."""

    def __init__(self, tokenizer: Tokenizer, prompt_ids: Sequence[int] = (), skip_special_tokens: bool = True):
        self._tok = tokenizer
        self._skip = skip_special_tokens
        # The last few prompt ids are decoding context only: their text is never emitted.
        self._ids: list[int] = [int(t) for t in list(prompt_ids)[-_INITIAL_CONTEXT:]]
        self._prefix = 0  # window start: context for the decoder
        self._read = len(self._ids)  # ids before this have been emitted
        self._prefix_text = self._decode(self._ids)

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=self._skip)

    def push(self, tid: int) -> str:
        """Add one id; return the newly completed text (possibly "")."""
        self._ids.append(int(tid))
        text = self._decode(self._ids[self._prefix :])
        # U+FFFD at the end: the window ends inside a multi-byte character; wait.
        if len(text) > len(self._prefix_text) and not text.endswith("\ufffd"):
            delta = text[len(self._prefix_text) :]
            self._prefix, self._read = self._read, len(self._ids)
            self._prefix_text = self._decode(self._ids[self._prefix : self._read])
            return delta
        return ""

    def flush(self) -> str:
        """End of generation: whatever is still held back (incomplete bytes become U+FFFD)."""
        text = self._decode(self._ids[self._prefix :])
        delta = text[len(self._prefix_text) :] if len(text) > len(self._prefix_text) else ""
        # Everything is emitted now; keep the last ids as context for any later push.
        self._ids = self._ids[-_INITIAL_CONTEXT:]
        self._prefix = 0
        self._read = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return delta
