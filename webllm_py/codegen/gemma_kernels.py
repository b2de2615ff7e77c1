"""Elementwise kernel families of the Gemma ops (ir/ops.py gelu_mul, softcap), registered into kernels.py.

Both are one invocation per vec4 (cols % 4 == 0) or element of an (n, cols) activation, in every
program set: their shape is the same for CPU and GPU adapters (a memory-bound pass over one
activation, adjacent invocations on adjacent 16-byte words). The math is done in f32 whatever
the activation dtype, with tanh(u) = 1 - 2 / (exp(2u) + 1) on u clamped to +-15 (tanh(15) == 1
in f32; the clamp keeps exp finite), as gelu.wgsl does.

  gelu_mul  out = gelu_tanh(gate) * up           Gemma's GeGLU, after the gate/up matmul(s)
  softcap   out = tanh(x / cap) * cap             Gemma 2's final logit soft-capping
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .basic_kernels import ColsKey, _plan_elementwise, _plan_gated
from .kernels import KernelKey, _Plan, f32_literal, register_family


@dataclass(frozen=True)
class GeluMulKey(ColsKey):
    """out = gelu_tanh(gate) * up, (n, cols)."""

    family: ClassVar[str] = "gelu_mul"


@dataclass(frozen=True)
class SoftcapKey(KernelKey):
    """out = tanh(x / cap) * cap, (n, cols); cap > 0."""

    family: ClassVar[str] = "softcap"
    act: str
    cols: int
    cap: float
    wg: int = 64


def _plan_softcap(k: SoftcapKey) -> _Plan:
    if not k.cap > 0:
        raise ValueError(f"{k.name}: cap must be > 0, got {k.cap!r}")
    plan = _plan_elementwise(k, ["x"])
    plan.consts["cap_lit"] = f32_literal(k.cap)
    return plan


register_family(GeluMulKey, _plan_gated)
register_family(SoftcapKey, _plan_softcap)
