"""The small GGUF files the tests write: gguf-py's own writer and quantizers (the reference nobody
here wrote), so a test's file is what llama.cpp's tools would make of the same tensors."""

from __future__ import annotations

from typing import Any

import numpy as np


def add_tensor(w: Any, name: str, t: np.ndarray, qtype: str | None = None) -> None:
    """Add `t` to GGUFWriter `w` as `name`: quantized by gguf.quants.quantize to GGML type `qtype`
    ("Q8_0", "Q4_K", ...), or as it is for None / "F32"."""
    import gguf

    if qtype in (None, "F32"):
        w.add_tensor(name, t)
    else:
        qt = gguf.GGMLQuantizationType[qtype]
        w.add_tensor(name, gguf.quants.quantize(t, qt), raw_dtype=qt)


def finish_gguf(w: Any) -> None:
    """Write GGUFWriter `w`'s header, key-values and tensors, in that order, and close the file."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def add_spelled_vocab(w: Any, vocab: int) -> None:
    """A gpt2-model vocabulary of `vocab` tokens for a tiny GGUF: the printable ASCII characters
    (so any ASCII text spells), filler tokens, one merge, and <s> / </s> as the last two (bos, eos)."""
    spell = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(spell + [f"t{i}" for i in range(vocab - len(spell) - 2)] + ["<s>", "</s>"])
    w.add_token_types([1] * (vocab - 2) + [3, 3])
    w.add_token_merges(["t 0"])
    w.add_bos_token_id(vocab - 2)
    w.add_eos_token_id(vocab - 1)
