"""Kernel variants: one frozen key per variant, rendered from `wgsl_templates/`.

A key names a kernel family (`family`) and every constant baked into its WGSL:
activation dtype ("f32" | "f16"), weight format, shapes, eps, and the tuning
knobs (workgroup size `wg`, tokens per invocation `tn`, ...). `build(key)`
returns a `Kernel`: the WGSL text plus the plain data a runtime needs to run it:

  bindings        ((name, kind), ...), kind "read" | "read_write" | "uniform";
                  binding index = position, all in @group(0).
  workgroup_size  (x, y, z)
  dispatch        workgroup counts (x, y, z) as expressions over n (tokens this
                  step) and p (tokens already cached): integers, n, p, + - * //
                  and parentheses; evaluated with webllm_py.ir.eval_dim.

Every kernel that needs n or p binds "step", a 16-byte uniform
`struct Step { n: u32, p: u32, _pad0: u32, _pad1: u32 }`, written once per step.

Buffer element types (what the lowering pass must allocate):
  activations and KV cache: f32 (act="f32") or f16 (act="f16", needs shader-f16);
  ids: i32;  norm weights, biases, rope inv_freq: f32;
  weights: the stored formats of webllm_py.quant.formats, bound as raw words
  (q4/q8 data u32, scales f16 read two per u32 word, f16 data read two per u32).
Every binding's size must be a multiple of 16 bytes (round buffers up; the
kernels never read past the logical extent except within the last 16 bytes).

This module holds the key base, the family registry (register_family) and build/render, and the
families still listed in _PLANNERS below; the others live in their own modules, each registering itself:
  matmul.py (matmul, matmul_key)
  rope_kernels.py (rope, rope_kv, kv_write, KV cache storage)
  basic_kernels.py (embedding, rms_norm, add_rms_norm, silu_mul, add, last_row, pack)
  and encoder_kernels.py, gemma_kernels.py, gemv.py, gemm.py, attention_gpu.py, attention_tiled.py,
  argmax.py (imported by codegen/__init__.py). Their names stay importable from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import numpy as np

from ..ir.graph import eval_dim
from ..quant.formats import FORMATS, GROUP_SIZE

ACTS = ("f32", "f16")
WEIGHT_FORMATS = ("f32", "f16", "q8", "q4", "q4a", "q5", "q5a", "q2k", "q3k", "q4k", "q5k", "q6k")
MAX_WORKGROUPS = 65535  # WebGPU maxComputeWorkgroupsPerDimension
MAX_INVOCATIONS = 256  # WebGPU maxComputeInvocationsPerWorkgroup (default limit)
MAX_WORKGROUP_STORAGE = 16384  # WebGPU maxComputeWorkgroupStorageSize (default limit)
MAX_STORAGE_BUFFERS = 8  # WebGPU maxStorageBuffersPerShaderStage (default limit)
# weight format -> the packed-activation layout its integer dot products read (MatmulKey xq / pack)
PACK_LAYOUTS = {"q4": "pairs", "q4a": "pairs", "q8": "bytes"}
# WGSL language features a kernel's text needs (the browser runtime checks them before picking a set)
WGSL_FEATURE_USES = {"packed_4x8_integer_dot_product": ("dot4I8Packed", "pack4xI8")}


def wgsl_features(wgsl: str) -> list[str]:
    """The WGSL language features (navigator.gpu.wgslLanguageFeatures) this kernel text uses."""
    return [f for f, uses in WGSL_FEATURE_USES.items() if any(u + "(" in wgsl for u in uses)]


def _template_dir() -> Path:
    top = Path(__file__).resolve().parents[2] / "wgsl_templates"
    if top.is_dir():
        return top
    return Path(__file__).resolve().parents[1] / "wgsl_templates"  # installed wheel


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def f32_literal(x: float) -> str:
    """A WGSL literal that parses to exactly float32(x)."""
    v = float(np.float32(x))
    if not math.isfinite(v):
        raise ValueError(f"cannot bake non-finite constant {x!r} into WGSL")
    return repr(v) + "f" if ("." in repr(v) or "e" in repr(v)) else repr(v) + ".0f"


def _ceil(a: str, b: int) -> str:
    return a if b == 1 else f"({a} + {b - 1}) // {b}"


# Field metadata of options added after a family's first release: left out of the
# variant name and the key JSON while they hold their default, so the kernels
# (names, headers, text) of keys that do not use them stay exactly as before.
OMIT_DEFAULT = {"omit_default": True}


def _omitted(key: Any, f: Any) -> bool:
    return bool(f.metadata.get("omit_default")) and getattr(key, f.name) == f.default


def _const_groups(count: int, what: str, key: Any) -> None:
    if count > MAX_WORKGROUPS:
        raise ValueError(f"{key.name}: {count} workgroups along x for {what} exceeds WebGPU's {MAX_WORKGROUPS}; raise wg")


# -- keys ------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelKey:
    """Base of all keys. `family` is the template name; fields are baked constants."""

    family: ClassVar[str] = ""

    @property
    def name(self) -> str:
        """Deterministic variant name, e.g. matmul_act-f32_fmt-q4_rows-576_..."""
        parts = []
        for f in fields(self):
            if _omitted(self, f):
                continue
            v = getattr(self, f.name)
            if isinstance(v, bool):
                v = int(v)
            elif isinstance(v, tuple):
                v = "x".join(str(e) for e in v)
            parts.append(f"{f.name}-{v}")
        return "_".join([self.family] + parts)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"family": self.family}
        for f in fields(self):
            if not _omitted(self, f):
                v = getattr(self, f.name)
                d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    def _check_act(self) -> None:
        act = getattr(self, "act")
        if act not in ACTS:
            raise ValueError(f"{self.family}: act must be one of {ACTS}, got {act!r}")

    def _check_wg(self, wg: int) -> None:
        if not 1 <= wg <= MAX_INVOCATIONS:
            raise ValueError(f"{self.family}: workgroup size {wg} outside 1..{MAX_INVOCATIONS}")


@dataclass(frozen=True)
class AttentionKey(KernelKey):
    """Causal GQA attention of q (n, heads*head_dim) over cache rows 0..p+n-1.

    form="decode": one workgroup per (head, query); its wg lanes split the keys,
    each keeps an online softmax, one combine at the end (good for n == 1,
    correct for any n). form="prefill": one invocation per (query, head), wg
    queries of one head per workgroup, no barriers (good for n > 1).
    window > 0: a sliding window, query at position t sees rows max(0, t-window+1)..t only (the
    loops start there). softcap > 0: scores tanh(s / softcap) * softcap (Gemma 2). ring > 0: the
    caches are a ring of `ring` rows (a sliding-window layer's), key t read from row t % ring."""

    family: ClassVar[str] = "attention"
    act: str
    heads: int
    kv_heads: int
    head_dim: int
    scale: float
    form: str = "decode"
    wg: int = 0  # 0: the default for the form
    window: int = field(default=0, metadata=OMIT_DEFAULT)
    softcap: float = field(default=0.0, metadata=OMIT_DEFAULT)
    ring: int = field(default=0, metadata=OMIT_DEFAULT)

    def lanes(self) -> int:
        if self.wg:
            return self.wg
        if self.form == "prefill":
            return 8
        # 8 lanes, measured on SmolLM2's shapes (heads 9, head_dim 64): on SwiftShader 4.3x (p=64)
        # and 1.7x (p=512) faster than 32 lanes (bench/kernel_bench.py); on lavapipe as fast as 32
        # (4 is 1.5x slower there at p=1000). Real GPUs likely want more: tune per adapter.
        lanes = 8
        while lanes > 1 and lanes * (self.head_dim * 4 + 8) > MAX_WORKGROUP_STORAGE:
            lanes //= 2
        return lanes


KEY_TYPES: dict[str, type[KernelKey]] = {k.family: k for k in [AttentionKey]}


def key_from_json(d: dict[str, Any]) -> KernelKey:
    d = dict(d)
    cls = KEY_TYPES[d.pop("family")]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# -- kernels ---------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    key: KernelKey
    name: str
    wgsl: str
    bindings: tuple[tuple[str, str], ...]
    workgroup_size: tuple[int, int, int]
    dispatch: tuple[str, str, str]

    def dispatch_for(self, n: int, p: int, b: int = 0) -> tuple[int, int, int]:
        env = {"n": n, "p": p, "b": b}  # b: rows of an encoder batch (encoder_kernels.py)
        return tuple(eval_dim(e, env) for e in self.dispatch)  # type: ignore[return-value]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key.to_json(), "bindings": [list(b) for b in self.bindings],
                "workgroup_size": list(self.workgroup_size), "dispatch": list(self.dispatch)}


@dataclass
class _Plan:
    """What a family's planner hands the template: declarations and constants."""

    decls: list[tuple[str, str, str, str]]  # (name, kind, wgsl type, layout comment)
    workgroup_size: tuple[int, int, int]
    dispatch: tuple[str, str, str]
    consts: dict[str, Any]


def _act_arr(act: str, vec: int = 1) -> str:
    return f"array<{act}>" if vec == 1 else f"array<vec{vec}<{act}>>"


STEP = ("step", "uniform", "Step", "Step { n, p }: tokens this step, tokens already cached")


def _weight_decls(fmt: str, rows: int, cols: int, vec_ok: bool) -> list[tuple[str, str, str, str]]:
    """Declarations of a (rows, cols) weight in `fmt`. vec_ok: bind vectorized word arrays."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; known: {sorted(FORMATS)}")
    if FORMATS[fmt].block is not None:  # GGUF block formats: bindings from _dequant.wgsl's table
        from .dequant import weight_decls

        return weight_decls(fmt, rows, cols)
    g = -(-cols // GROUP_SIZE)
    if fmt == "q4":
        ty = "array<vec4<u32>>" if vec_ok else "array<u32>"
        return [("w", "read", ty, f"({rows}, {g}*4) u32: 4-bit q+8 nibbles, column c at bits 4*(c%8) of word c/8"),
                ("scales", "read", "array<u32>", f"({rows}, {g}) f16 scales, two per u32 word")]
    if fmt == "q4a":
        ty = "array<vec4<u32>>" if vec_ok else "array<u32>"
        return [("w", "read", ty, f"({rows}, {g}*4) u32: 4-bit q nibbles, column c at bits 4*(c%8) of word c/8"),
                ("scales", "read", "array<u32>", f"({rows}, {g}) u32: f16 (scale, lo) pair per group, w = scale*q + lo")]
    if fmt == "q8":
        ty = "array<vec4<u32>>" if vec_ok else "array<u32>"
        return [("w", "read", ty, f"({rows}, {g}*8) u32: int8 q, column c at bits 8*(c%4) of word c/4"),
                ("scales", "read", "array<u32>", f"({rows}, {g}) f16 scales, two per u32 word")]
    if fmt == "f16":
        ty = "array<vec4<u32>>" if vec_ok and cols % 8 == 0 else "array<u32>"
        return [("w", "read", ty, f"({rows}, {cols}) f16, two per u32 word")]
    ty = "array<vec4<f32>>" if vec_ok and cols % 4 == 0 else "array<f32>"
    return [("w", "read", ty, f"({rows}, {cols}) f32")]


def _plan_attention(k: AttentionKey) -> _Plan:
    k._check_act()
    if k.heads % k.kv_heads:
        raise ValueError(f"{k.name}: heads {k.heads} is not a multiple of kv_heads {k.kv_heads}")
    if k.head_dim % 4:
        raise ValueError(f"{k.name}: head_dim must be a multiple of 4 (vec4 loads)")
    if k.form not in ("decode", "prefill"):
        raise ValueError(f"{k.name}: form must be 'decode' or 'prefill'")
    if k.window < 0 or not k.softcap >= 0:
        raise ValueError(f"{k.name}: window must be >= 0 keys and softcap >= 0 (0: none)")
    check_ring(k, k.window)
    lanes = k.lanes()
    k._check_wg(lanes)
    if k.form == "decode" and lanes * (k.head_dim * 4 + 8) > MAX_WORKGROUP_STORAGE:
        raise ValueError(f"{k.name}: {lanes} lanes x head_dim {k.head_dim} exceed 16 KiB of workgroup storage")
    qw, kvw = k.heads * k.head_dim, k.kv_heads * k.head_dim
    decls = [("q", "read", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"),
             ("k_cache", "read", _act_arr(k.act, 4), kv_layout(k.act, "", kvw, "0..p+n-1 read", k.ring)
              if k.ring else f"(context_window, {kvw}) {k.act}: rows 0..p+n-1 read"),
             ("v_cache", "read", _act_arr(k.act, 4), kv_layout(k.act, "", kvw, "0..p+n-1 read", k.ring)
              if k.ring else f"(context_window, {kvw}) {k.act}: rows 0..p+n-1 read"),
             ("out", "read_write", _act_arr(k.act, 4), f"(n, {qw}) {k.act}"), STEP]
    if k.form == "decode":
        disp = (str(k.heads), "n", "1")
    else:
        disp = (_ceil("n", lanes), str(k.heads), "1")
    return _Plan(decls, (lanes, 1, 1), disp,
                 dict(lanes=lanes, group=k.heads // k.kv_heads, hd4=k.head_dim // 4, qw=qw, kvw=kvw,
                      scale_lit=f32_literal(k.scale), cap_lit=f32_literal(k.softcap) if k.softcap else ""))


_PLANNERS: dict[str, Any] = {
    "attention": _plan_attention,
}

_TEMPLATE = {"attention": lambda k: f"attention_{k.form}.wgsl"}


def register_family(key_type: type[KernelKey], planner: Any, template: Any = None) -> None:
    """Add a kernel family in one place: its key type, its planner (key -> _Plan) and, when its
    template is not `wgsl_templates/<family>.wgsl`, a function key -> template file name."""
    fam = key_type.family
    if fam in KEY_TYPES and KEY_TYPES[fam] is not key_type:
        raise ValueError(f"kernel family {fam!r} registered twice")
    KEY_TYPES[fam] = key_type
    _PLANNERS[fam] = planner
    if template is not None:
        _TEMPLATE[fam] = template


@lru_cache(maxsize=None)
def build(key: KernelKey) -> Kernel:
    """Render and describe one kernel variant (cached per key)."""
    plan = _PLANNERS[key.family](key)
    storage = sum(1 for d in plan.decls if d[1] != "uniform")
    if storage > MAX_STORAGE_BUFFERS:
        raise ValueError(f"{key.name}: {storage} storage buffers exceed WebGPU's {MAX_STORAGE_BUFFERS}")
    ctx = {f.name: getattr(key, f.name) for f in fields(key)}
    ctx.update(plan.consts)
    ctx.update(key=key, family=key.family, name=key.name, decls=plan.decls,
               workgroup_size=plan.workgroup_size, dispatch=plan.dispatch)
    tname = _TEMPLATE.get(key.family, lambda k: f"{k.family}.wgsl")(key)
    wgsl = _env().get_template(tname).render(**ctx)
    return Kernel(key=key, name=key.name, wgsl=wgsl,
                  bindings=tuple((d[0], d[1]) for d in plan.decls),
                  workgroup_size=plan.workgroup_size, dispatch=plan.dispatch)


def render(key: KernelKey) -> str:
    """The WGSL source of one kernel variant."""
    return build(key).wgsl


# The families in their own modules (each registers itself on import); their names stay importable
# from here. Imported last: they build on the definitions above.
from .matmul import (  # noqa: E402,F401
    _check_matmul_fusions, _check_pack_layout, EPILOGUES, matmul_key, MatmulKey, _pack_decls,
    _plan_matmul,
)
from .rope_kernels import (  # noqa: E402,F401
    check_kv, _check_kv_pairs, check_ring, kv_array_type, kv_layout, KV_STORAGE, KvWriteKey, _plan_kv_write,
    _plan_rope, _plan_rope_kv, ROPE_ATTRS, _rope_consts, _rope_table, RopeKey, RopeKvKey, with_rope, with_ring,
)
from .basic_kernels import (  # noqa: E402,F401
    AddKey, AddRmsNormKey, EmbeddingKey, LastRowKey, PackKey, _plan_add_rms_norm, _plan_elementwise,
    _plan_embedding, _plan_last_row, _plan_pack, _plan_rms_norm, RmsNormKey, SiluMulKey,
)
