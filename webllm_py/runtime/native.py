"""The native runtime: interprets the bundle's programs on a wgpu-py device.

Everything per step is prepared at load: weights uploaded once, activation,
KV-cache, ids, step-uniform, logits and staging buffers allocated once,
pipelines and bind groups created once per dispatch. A step writes the ids and
the 16-byte step uniform, records every dispatch of one program in one compute
pass, copies the logits rows to a staging buffer, submits once and maps the
staging buffer: one submission and one readback per step, no allocation. The next
decode step's commands are recorded while the GPU runs this one (encode_ahead.py), and a
greedy decode step can read back only its argmax id (forward_argmax, gpu_sampling.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..bundle import Bundle
from ..codegen.wgsl_compat import WGPU_PY_FEATURE
from ..errors import BundleError
from ..ir.graph import compile_dim
from ..passes.program_sets import PROGRAM_SETS
from .bundle_kernels import kernel_pipeline
from .device import request_device, select_adapter
from .encode_ahead import EncodeAhead
from .gpu_sampling import GpuArgmax
from .kv_sizing import buffer_bytes, kv_rings, memory_estimate, resolve_context_window, set_bytes, sized_buffers
from .kv_sizing import ACT_BYTES, round16 as _round16  # noqa: F401  (runtime/encoder.py imports them from here)
from .lm import CachedModel
from .program_choice import adapter_class, choose_program_set

# program sets (passes/program_sets.py): f32 / f16 / idot tuned for CPU adapters, gpu / gpu-sg for GPUs
PRECISIONS = ("auto", *PROGRAM_SETS)


def auto_precision(adapter: Any, programs: dict[str, Any]) -> str:
    """What "auto" runs of a bundle without program-set metadata (`programs` is all it has: the
    encoder bundles): program_choice.py's earlier rule (idot on CPU adapters, f16 with shader-f16,
    else f32)."""
    return choose_program_set({"programs": programs}, "auto", adapter_class(adapter), adapter.features)


class NativeModel(CachedModel):
    """LanguageModel (runtime/lm.py) on the GPU through wgpu-py."""

    # prefill-written KV rows do not depend on the step they were in (runtime/kv_reuse.py)
    kv_reuse = "program"

    def __init__(self, bundle: Bundle, precision: str = "auto", adapter: Any = None, profile: bool = False,
                 context_window_size: int | None = None):
        """context_window_size: KV-cache rows to allocate, up to the bundle's context_window (its
        default); a smaller window uses less memory (kv_sizing.py) and refuses longer prompts."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        m = bundle.manifest
        if "programs" not in m:
            raise BundleError("bundle has no programs (built by an older webllm-py?); rebuild it", bundle.dir)
        self.bundle, self.bundle_dir, self.manifest = bundle, bundle.dir, m
        self.vocab_size = int(m["model"]["config"]["vocab_size"])
        self.context_window = resolve_context_window(m, context_window_size)
        self.prefill_chunk = int(m["prefill_chunk"])
        self.kv_rings = kv_rings(m)  # sliding-window ring caches: which cached rows were overwritten (kv_reuse.py)
        self.eos_token_ids = set(m["tokenizer"]["eos_token_ids"])

        self.adapter = adapter or select_adapter()
        features = {next((w for w, n in WGPU_PY_FEATURE.items() if n == f), f) for f in self.adapter.features}
        self.precision = choose_program_set(m, precision, adapter_class(self.adapter), features)
        meta = next((s for s in m.get("program_sets", []) if s["name"] == self.precision), {})
        # known before anything is allocated: what a caller can check against the device's memory
        self.memory_estimate = memory_estimate(m, self.precision, self.context_window)
        specs = sized_buffers(m, self.context_window)
        act_bytes, kv_bytes = set_bytes(m, self.precision)
        sizes = {name: buffer_bytes(b, act_bytes, kv_bytes) for name, b in specs.items()}
        max_storage = max(len(k["bindings"]) for k in m["kernels"].values())
        self.device = request_device(self.adapter, f16=self.precision == "f16",
                                     storage_binding_bytes=max(sizes.values()), buffer_bytes=max(sizes.values()),
                                     storage_buffers=max_storage, timestamps=profile,
                                     features=[f for f in meta.get("features", []) if f != "shader-f16"])
        self._buffers = self._create_buffers(specs, sizes)
        self._programs = self._prepare_programs(m["programs"][self.precision])
        self._act_dtype = np.float16 if act_bytes == 2 else np.float32
        # decode steps recorded ahead (encode_ahead.py); the argmax for greedy decoding (gpu_sampling.py)
        self._ahead = EncodeAhead(self._encode)
        self._argmax = GpuArgmax(self.device, "f16" if self._act_dtype == np.float16 else "f32",
                                 self._buffers["logits"], self.vocab_size)
        self._pick = False  # the readback mode of the last decode step: the next is recorded ahead in it

    # -- load ------------------------------------------------------------------------
    def _create_buffers(self, specs: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
        import wgpu

        U = wgpu.BufferUsage
        d = self.device
        bufs = {}
        for name, b in specs.items():
            usage = U.STORAGE | U.COPY_DST
            if b["kind"] == "uniform":
                usage = U.UNIFORM | U.COPY_DST
            elif b["kind"] == "output":
                usage |= U.COPY_SRC
            bufs[name] = d.create_buffer(size=sizes[name], usage=usage, label=name)
            if b["kind"] == "weight":
                ref = self.manifest["weights"][b["param"]]["parts"][b["part"]]
                data = self.bundle.read_part(ref).tobytes()[b["offset"] : b["offset"] + b["bytes"]]
                d.queue.write_buffer(bufs[name], 0, data + b"\0" * (-len(data) % 4))
        self._staging = d.create_buffer(size=sizes["logits"], usage=U.MAP_READ | U.COPY_DST, label="logits-staging")
        return bufs

    def _prepare_programs(self, programs: dict[str, Any]) -> dict[str, dict[str, Any]]:
        pipelines: dict[str, tuple[Any, Any]] = {}
        out = {}
        for pname, prog in programs.items():
            steps = []
            for disp in prog["dispatches"]:
                kname = disp["kernel"]
                if kname not in pipelines:
                    pipelines[kname] = kernel_pipeline(self.device, self.adapter, self.bundle, kname)
                pipe, bgl = pipelines[kname]
                bg = self.device.create_bind_group(layout=bgl, entries=[
                    {"binding": i, "resource": {"buffer": self._buffers[b], "offset": 0, "size": self._buffers[b].size}}
                    for i, b in enumerate(disp["bindings"])])
                steps.append((pipe, bg, [compile_dim(w) for w in disp["workgroups"]], kname))
            out[pname] = {"steps": steps, "rows": compile_dim(prog["logits_rows"])}
        return out

    def close(self) -> None:
        """Destroy the GPU buffers and the device now (wgpu-py would free them only when the
        Python objects are collected); every later step raises."""
        if self._closed:
            return
        super().close()
        self._ahead.clear()
        self._argmax.destroy()
        for b in [*self._buffers.values(), self._staging]:
            b.destroy()
        self._buffers, self._programs = {}, {}
        self.device.destroy()

    # -- one step ----------------------------------------------------------------------
    def _encode(self, key: tuple[str, int, int, bool]) -> Any:
        """The command buffer of one step: program at (n, p), then the logits rows' copy to the
        staging buffer, or with pick the argmax of the last row and its 4-byte copy."""
        program, n, p, pick = key
        prog = self._programs[program]
        enc = self.device.create_command_encoder()
        cp = enc.begin_compute_pass()
        for pipe, bg, wg, _ in prog["steps"]:
            x, y, z = wg[0](n, p), wg[1](n, p), wg[2](n, p)
            if not x or not y or not z:  # a dispatch gated off at this n (codegen/shapes.py): skip it
                continue
            cp.set_pipeline(pipe)
            cp.set_bind_group(0, bg)
            cp.dispatch_workgroups(x, y, z)
        cp.end()
        if pick:
            self._argmax.encode(enc)
        else:
            nbytes = _round16(prog["rows"](n, p) * self.vocab_size * np.dtype(self._act_dtype).itemsize)
            enc.copy_buffer_to_buffer(self._buffers["logits"], 0, self._staging, 0, nbytes)
        return enc.finish()

    def _step(self, rows: str, ids: list[int], pick: bool = False) -> Any:
        """One program over ids at the current position; returns its logits rows (with pick: the
        argmax id of the last row, picked on the GPU)."""
        import wgpu

        program = "score" if rows == "all" else "decode" if len(ids) == 1 else "prefill"
        n, p = len(ids), self._position
        q = self.device.queue
        q.write_buffer(self._buffers["ids"], 0, np.asarray(ids, dtype=np.int32).tobytes())
        # [n, p, end, 0]: end is the forward call's (CachedModel._call_end; longrope's table switch)
        q.write_buffer(self._buffers["step"], 0, np.array([n, p, self._call_end or p + n, 0], dtype=np.uint32).tobytes())
        q.submit([self._ahead.take((program, n, p, pick))])
        if program == "decode":
            self._pick = pick
        if program != "score" and p + n < self.context_window:
            self._ahead.prepare(("decode", 1, p + n, self._pick))  # while the GPU runs this step
        if pick:
            return self._argmax.read()
        out_rows = self._programs[program]["rows"](n, p)
        nbytes = _round16(out_rows * self.vocab_size * np.dtype(self._act_dtype).itemsize)
        self._staging.map_sync(wgpu.MapMode.READ, 0, nbytes)
        data = np.frombuffer(self._staging.read_mapped(0, nbytes, copy=True), dtype=self._act_dtype)
        self._staging.unmap()
        return data[: out_rows * self.vocab_size].reshape(out_rows, self.vocab_size).astype(np.float32)

    def forward_argmax(self, ids: list[int]) -> int:
        """forward() of one decode token returning argmax(logits) picked on the GPU (gpu_sampling.py):
        4 bytes read back instead of the row; the same id as numpy's argmax of forward()'s row."""
        ids = self._check(ids)
        if len(ids) != 1:
            raise ValueError(f"forward_argmax takes one token (a decode step), got {len(ids)}")
        if self._stale(1):  # a longrope switch runs the cached ids again (runtime/lm.py): a prefill
            return int(np.argmax(self.forward(ids)))
        tok = int(self._step("last", ids, pick=True))
        self._advance(ids)
        return tok
