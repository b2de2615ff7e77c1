"""GGUF tokenizer metadata -> an HF tokenizer.json and tokenizer_config dict.

A GGUF carries no tokenizer.json: llama.cpp's converter stores the vocabulary,
token types, merges (or SentencePiece scores) and a pre-tokenizer *name*
(`tokenizer.ggml.pre`) as metadata. This module rebuilds the HF fast tokenizer
with the `tokenizers` library so that the bundle tokenizes exactly like the
model's original tokenizer.json:

- `tokenizer.ggml.model == "gpt2"`: byte-level BPE; the pre-tokenizer comes
  from a table keyed by `tokenizer.ggml.pre` (the same groups llama.cpp's
  llama-vocab.cpp uses), an unknown name is an error rather than a guess.
- `tokenizer.ggml.model == "llama"`: SentencePiece-BPE with byte fallback; the
  merges are recovered from the token scores, as HF's converters do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from ..errors import BuildError
from ..runtime.tokenizer import bytes_to_unicode as _bytes_to_unicode

# llama.cpp token types (gguf.TokenType).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The split regexes of the original HF tokenizer.json files (Llama 3, Qwen2).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# `tokenizer.ggml.pre` -> the HF pre-tokenizer that produced the GGUF's merges.
# Groups follow llama.cpp (llama-vocab.cpp), which gives each group one regex.
# A missing `pre` is llama.cpp's "default"; for byte-level vocabularies that
# predate the key (GPT-2, GPT-NeoX) the HF tokenizer is plain GPT-2 ByteLevel.
_GPT2_PRE = {"default", "gpt-2", "gpt2", "mpt", "olmo", "jais", "trillion"}
_DIGITS_PRE = {"smollm", "starcoder", "refact", "codeshell", "command-r", "exaone", "minerva-7b"}
_LLAMA3_PRE = {"llama3", "llama-v3", "llama-bpe", "falcon3", "smaug-bpe", "dbrx"}
_QWEN2_PRE = {"qwen2"}
SUPPORTED_PRE = sorted(_GPT2_PRE | _DIGITS_PRE | _LLAMA3_PRE | _QWEN2_PRE)
SUPPORTED_MODELS = ["gpt2 (byte-level BPE)", "llama (SentencePiece BPE with byte fallback)"]


def _byte_level_pre(pre: str, path: Path) -> tuple[Any, Any]:
    """(normalizer, pre_tokenizer) for a byte-level vocabulary's `tokenizer.ggml.pre`.

    Llama 3's own tokenizer additionally takes a pre-token whole when it is in
    the vocabulary (`ignore_merges`, as llama.cpp does for this group)."""
    if pre in _GPT2_PRE:
        return None, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGITS_PRE:
        # Digits split one by one first (SmolLM, StarCoder): the vocab holds no multi-digit tokens.
        return None, pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
    split = {**{p: _LLAMA3_SPLIT for p in _LLAMA3_PRE}, **{p: _QWEN2_SPLIT for p in _QWEN2_PRE}}.get(pre)
    if split is None:
        raise BuildError(
            f"tokenizer.ggml.pre '{pre}' is not supported for a byte-level BPE vocabulary; supported: {', '.join(SUPPORTED_PRE)}",
            path,
        )
    seq = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(split), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    # Qwen2's tokenizer.json NFC-normalizes before splitting.
    return (normalizers.NFC() if pre in _QWEN2_PRE else None), seq


def _spm_merges(tokens: Sequence[str], scores: Sequence[float], types: Sequence[int]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece-BPE vocabulary.

    SentencePiece merges the adjacent pair whose concatenation scores highest;
    a BPE whose merges are ranked by the merged piece's score (ties: by the
    merged piece's id, then the pieces' ids) makes the same choices. Only normal
    pieces take part: control/byte/unused tokens are never the result of a merge.
    """
    vocab = {t: i for i, t in enumerate(tokens) if types[i] in (NORMAL, USER_DEFINED)}
    found: list[tuple[float, int, int, int, str, str]] = []
    for merged, mid in vocab.items():
        for cut in range(1, len(merged)):
            left, right = merged[:cut], merged[cut:]
            if left in vocab and right in vocab:
                found.append((-float(scores[mid]), mid, vocab[left], vocab[right], left, right))
    found.sort()
    return [(f[4], f[5]) for f in found]


def _added_tokens(tokens: Sequence[str], types: Sequence[int]) -> list[AddedToken]:
    """Control/unknown tokens become special added tokens, user-defined ones plain added tokens;
    both are matched whole in the text before the model sees it, as in llama.cpp."""
    out = []
    for tok, ty in zip(tokens, types):
        if ty in (CONTROL, UNKNOWN):
            out.append(AddedToken(tok, special=True, normalized=False))
        elif ty == USER_DEFINED:
            out.append(AddedToken(tok, special=False, normalized=False))
    return out


def _post_processor(tokens: Sequence[str], bos: int | None, eos: int | None, add_bos: bool, add_eos: bool) -> Any:
    single, pair, special = ["$A:0"], ["$A:0"], []
    if add_bos and bos is not None:
        single, pair = [f"{tokens[bos]}:0"] + single, [f"{tokens[bos]}:0"] + pair
        special.append((tokens[bos], bos))
    if add_eos and eos is not None:
        single, pair = single + [f"{tokens[eos]}:0"], pair + [f"{tokens[eos]}:0"]
        special.append((tokens[eos], eos))
    if not special:
        return None
    pair = pair + [t.replace(":0", ":1").replace("$A", "$B") for t in pair]
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=list(dict.fromkeys(special)))


def build_tokenizer(meta: dict[str, Any], path: str | Path) -> tuple[str, dict[str, Any]]:
    """(tokenizer.json text, tokenizer_config dict) from GGUF metadata.

    `meta` maps GGUF keys (`tokenizer.ggml.tokens`, ...) to their decoded
    values. Errors are BuildErrors naming `path`.
    """
    path = Path(path)
    kind = meta.get("tokenizer.ggml.model")
    tokens: list[str] = list(meta.get("tokenizer.ggml.tokens") or [])
    if not tokens:
        raise BuildError("the GGUF has no tokenizer (tokenizer.ggml.tokens is missing)", path)
    types: list[int] = list(meta.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise BuildError(f"tokenizer.ggml.token_type has {len(types)} entries for {len(tokens)} tokens", path)
    ids = {k: meta.get(f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")}
    for k, v in ids.items():
        if v is not None and not 0 <= v < len(tokens):
            raise BuildError(f"tokenizer.ggml.{k}_token_id {v} is outside the vocabulary of {len(tokens)}", path)
    if kind == "gpt2":
        tok = _byte_level(meta, tokens, types, path)
        # GPT-2-style tokenizers add no BOS unless the file says so; llama.cpp defaults Llama 3's to on.
        add_bos_default = meta.get("tokenizer.ggml.pre") in _LLAMA3_PRE
    elif kind == "llama":
        tok = _sentencepiece(meta, tokens, types, ids["unknown"], path)
        add_bos_default = True  # llama.cpp's default for a SentencePiece vocabulary
    else:
        raise BuildError(f"tokenizer.ggml.model '{kind}' is not supported; supported: {', '.join(SUPPORTED_MODELS)}", path)
    added = _added_tokens(tokens, types)
    tok.add_special_tokens([t for t in added if t.special])
    tok.add_tokens([t for t in added if not t.special])
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    tok.post_processor = _post_processor(tokens, ids["bos"], ids["eos"], add_bos, add_eos)
    if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
        raise BuildError(
            f"the rebuilt tokenizer has {tok.get_vocab_size(with_added_tokens=True)} tokens, the GGUF {len(tokens)} "
            "(duplicate token strings?)",
            path,
        )
    cfg: dict[str, Any] = {"add_bos_token": add_bos, "add_eos_token": add_eos}
    for name, key in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding")):
        if ids[key] is not None:
            cfg[name] = tokens[ids[key]]
    if meta.get("tokenizer.chat_template") is not None:
        cfg["chat_template"] = meta["tokenizer.chat_template"]
    return tok.to_str(), cfg


def _byte_level(meta: dict[str, Any], tokens: list[str], types: list[int], path: Path) -> Tokenizer:
    spell = _bytes_to_unicode()
    alphabet = set(spell.values())
    vocab: dict[str, int] = {}
    for i, (t, ty) in enumerate(zip(tokens, types)):
        # Normal tokens are stored in the byte-level alphabet already; added
        # (control / user-defined) tokens keep their raw text, which is what the
        # added-token matcher looks for. Anything else is spelled byte by byte.
        if ty in (NORMAL, BYTE, UNUSED) and not set(t) <= alphabet:
            t = "".join(spell[b] for b in t.encode("utf-8"))
        vocab.setdefault(t, i)
    merges_raw = meta.get("tokenizer.ggml.merges")
    if merges_raw is None:
        raise BuildError("byte-level BPE vocabulary without tokenizer.ggml.merges", path)
    merges = []
    for m in merges_raw:
        parts = m.split(" ")
        if len(parts) != 2:
            raise BuildError(f"tokenizer.ggml.merges entry {m!r} is not two tokens separated by a space", path)
        merges.append((parts[0], parts[1]))
    pre = meta.get("tokenizer.ggml.pre") or "default"
    normalizer, pre_tokenizer = _byte_level_pre(pre, path)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False, ignore_merges=pre in _LLAMA3_PRE))
    tok.pre_tokenizer = pre_tokenizer
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.decoder = decoders.ByteLevel()
    return tok


def _sentencepiece(meta: dict[str, Any], tokens: list[str], types: list[int], unk: int | None, path: Path) -> Tokenizer:
    scores = meta.get("tokenizer.ggml.scores")
    if scores is None or len(scores) != len(tokens):
        raise BuildError("SentencePiece vocabulary without one tokenizer.ggml.scores entry per token", path)
    vocab: dict[str, int] = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    given = meta.get("tokenizer.ggml.merges")
    merges = [tuple(m.split(" ", 1)) for m in given] if given else _spm_merges(tokens, scores, types)
    tok = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=tokens[unk] if unk is not None else None,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    # llama.cpp (and Llama 2's tokenizer.json) put a "▁" before every piece of
    # raw text that starts the input or follows a special token, and write
    # spaces as "▁"; HF's legacy Llama normalizer does exactly that.
    prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
    norms = ([normalizers.Prepend("▁")] if prefix else []) + [normalizers.Replace(" ", "▁")]
    tok.normalizer = normalizers.Sequence(norms)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    return tok

