"""The "argmax" kernel family: greedy decoding's token picked on the GPU (runtime/gpu_sampling.py).

One logits row reduces to its argmax id, so a greedy decode step reads back 4 bytes instead of
vocab x 4. The id is numpy's `argmax` of the row as the CPU sampler takes it (sampler.py
sample_token at temperature 0, on the row widened to float64, which keeps the order): lowest id
wins ties, -0 equals +0, NaN beats every number (the first NaN's id). The row length is a
runtime value (the `args` uniform), so the WGSL depends on the activation dtype only and the
JS runtime ships the same two texts (web/src/gpu_sampling_wgsl.js, checked against these by
tests/test_gpu_sampling.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .kernels import KernelKey, _Plan, build, register_family


@dataclass(frozen=True)
class ArgmaxKey(KernelKey):
    """out[0] = argmax of logits row args.row (args.cols values), read as 16-byte chunks of u32 words."""

    family: ClassVar[str] = "argmax"
    act: str
    wg: int = 256


def _plan_argmax(k: ArgmaxKey) -> _Plan:
    k._check_act(), k._check_wg(k.wg)
    if k.wg & (k.wg - 1):
        raise ValueError(f"{k.name}: wg must be a power of two (the combine is a halving tree)")
    words = "8 f16 per chunk, low half of each word first" if k.act == "f16" else "4 f32 per chunk"
    decls = [("logits", "read", "array<vec4<u32>>", f"(rows, cols) {k.act} logits as 16-byte chunks, {words}"),
             ("out", "read_write", "array<u32>", "(1,) u32: the argmax id"),
             ("args", "uniform", "Args", "Args { cols, row }: row length, row to reduce (a KernelRunner's n, p)")]
    return _Plan(decls, (k.wg, 1, 1), ("1", "1", "1"), {"per": 8 if k.act == "f16" else 4})


register_family(ArgmaxKey, _plan_argmax)


JS_MODULE = "web/src/gpu_sampling_wgsl.js"


def js_module() -> str:
    """The text of web/src/gpu_sampling_wgsl.js: the browser runtime's copy of both variants."""
    import json

    kernels = {act: build(ArgmaxKey(act)) for act in ("f32", "f16")}
    bindings = [list(b) for b in kernels["f32"].bindings]
    lines = ["// GENERATED from wgsl_templates/argmax.wgsl by webllm_py.codegen.argmax.write_js_module(): do not edit",
             "// (tests/test_gpu_sampling.py fails when it is stale). The argmax kernel of codegen/argmax.py",
             "// per logits dtype, for web/src/gpu_sampling.js.",
             f"export const ARGMAX_BINDINGS = {json.dumps(bindings)};",
             "export const ARGMAX_WGSL = {"]
    lines += [f"  {act}: {json.dumps(k.wgsl)}," for act, k in kernels.items()]
    return "\n".join(lines + ["};", ""])



def write_js_module() -> None:
    """Regenerate web/src/gpu_sampling_wgsl.js (after editing the template)."""
    from pathlib import Path

    (Path(__file__).resolve().parents[2] / JS_MODULE).write_text(js_module(), encoding="utf-8")
