"""Greedy decoding's token picked on the GPU: 4 bytes read back per decode step instead of the
vocabulary's logits (issue 11, "per-token fixed cost").

`full_logits_needs(req)` is the ONE decision both engine paths use (web/src/gpu_sampling.js
mirrors it field for field): the GPU argmax stands in for the CPU sampler only when the token is
exactly `argmax(logits)` and nothing else reads the logits. At temperature 0 the sampler returns
numpy's argmax of the processed row (sampler.sample_token) before top_p / top_k / min_p are
looked at, so those do not matter; every step-0..3 input (grammar mask, logit_bias, penalties)
and every logprobs output does. The kernel (codegen/argmax.py) returns the same id as that
argmax bit for bit: lowest id on ties, -0 == +0, the first NaN over everything.

`GpuArgmax` is the native runtime's half: the pipeline, a 16-byte result buffer and its staging
copy, appended to a decode step's command buffer after the program's dispatches.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..codegen import build
from ..codegen.argmax import ArgmaxKey
from .device import create_pipeline

# What makes a request need the full logits row on the CPU: name -> test on the validated Request.
# Extend this table (and gpu_sampling.js's) when the sampler gains an input or an output.
FULL_LOGITS_NEEDS: dict[str, Callable[[Any], bool]] = {
    "temperature > 0": lambda r: r.sampling.temperature != 0,
    "logprobs": lambda r: bool(r.logprobs) or r.top_logprobs > 0,
    "logit_bias": lambda r: bool(r.sampling.logit_bias),
    "repetition_penalty": lambda r: r.sampling.repetition_penalty != 1.0,
    "frequency_penalty": lambda r: r.sampling.frequency_penalty != 0.0,
    "presence_penalty": lambda r: r.sampling.presence_penalty != 0.0,
    "grammar (response_format / tool calls)": lambda r: r.grammar is not None,
}


def full_logits_needs(req: Any) -> list[str]:
    """Why this request's decode steps must read back the whole logits row ([]: greedy only)."""
    return [name for name, needs in FULL_LOGITS_NEEDS.items() if needs(req)]


def gpu_argmax_ok(req: Any, model: Any) -> bool:
    """Whether the engine may take decode tokens from `model.forward_argmax` (a model that has one)."""
    return callable(getattr(model, "forward_argmax", None)) and not full_logits_needs(req)


class GpuArgmax:
    """The argmax kernel bound to a runtime's logits buffer (row 0, `vocab` values)."""

    def __init__(self, device: Any, act: str, logits: Any, vocab: int):
        import wgpu

        U = wgpu.BufferUsage
        kernel = build(ArgmaxKey(act))
        self._pipe, bgl = create_pipeline(device, kernel.wgsl, kernel.bindings, kernel.name)
        self._out = device.create_buffer(size=16, usage=U.STORAGE | U.COPY_SRC, label="argmax")
        self._staging = device.create_buffer(size=16, usage=U.MAP_READ | U.COPY_DST, label="argmax-staging")
        args = device.create_buffer(size=16, usage=U.UNIFORM | U.COPY_DST, label="argmax-args")
        device.queue.write_buffer(args, 0, np.array([vocab, 0, 0, 0], dtype=np.uint32).tobytes())
        bufs = {"logits": logits, "out": self._out, "args": args}
        self._group = device.create_bind_group(layout=bgl, entries=[
            {"binding": i, "resource": {"buffer": bufs[name], "offset": 0, "size": bufs[name].size}}
            for i, (name, _) in enumerate(kernel.bindings)])
        self._buffers = [self._out, self._staging, args]

    def encode(self, enc: Any) -> None:
        """Append the reduction and the 4-byte copy to `enc`, after the step's compute pass."""
        cp = enc.begin_compute_pass()
        cp.set_pipeline(self._pipe)
        cp.set_bind_group(0, self._group)
        cp.dispatch_workgroups(1, 1, 1)
        cp.end()
        enc.copy_buffer_to_buffer(self._out, 0, self._staging, 0, 16)

    def read(self) -> int:
        """The id of the submitted step (waits for it)."""
        import wgpu

        self._staging.map_sync(wgpu.MapMode.READ, 0, 16)
        tok = int(np.frombuffer(self._staging.read_mapped(0, 4, copy=True), dtype=np.uint32)[0])
        self._staging.unmap()
        return tok

    def destroy(self) -> None:
        for b in self._buffers:
            b.destroy()
