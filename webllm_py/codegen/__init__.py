"""WGSL code generation: kernel keys -> WGSL text + bindings + dispatch (see kernels.py)."""

from .kernels import (
    ACTS,
    KEY_TYPES,
    WEIGHT_FORMATS,
    AddKey,
    AddRmsNormKey,
    AttentionKey,
    EmbeddingKey,
    Kernel,
    KernelKey,
    KvWriteKey,
    LastRowKey,
    PackKey,
    MatmulKey,
    RmsNormKey,
    RopeKey,
    RopeKvKey,
    SiluMulKey,
    build,
    f32_literal,
    key_from_json,
    matmul_key,
    render,
)
from .runner import KernelRunner, has_f16, request_device
from . import encoder_kernels  # noqa: E402,F401  (registers the encoder programs' kernel families)
# GPU-adapter kernel families (register themselves with kernels.register_family)
from . import attention_gpu, attention_tiled, gemm, gemv  # noqa: E402,F401
from . import gemma_kernels  # noqa: E402,F401  (Gemma's elementwise ops: gelu_mul, softcap)
from . import argmax  # noqa: E402,F401  (greedy decoding's token on the GPU: runtime/gpu_sampling.py)

__all__ = [
    "ACTS", "KEY_TYPES", "WEIGHT_FORMATS", "AddKey", "AddRmsNormKey", "AttentionKey", "EmbeddingKey",
    "Kernel", "KernelKey", "KvWriteKey", "LastRowKey", "MatmulKey", "PackKey", "RmsNormKey", "RopeKey", "RopeKvKey", "SiluMulKey",
    "build", "f32_literal", "key_from_json", "matmul_key", "render", "KernelRunner", "has_f16", "request_device",
]
