"""A whole decode step on a real GPU, for bench/gpu_bench.py: random-weight model, bundle, native decode.

Decode speed depends on shapes and formats, not on weight values, so the model is a seeded
random llama of a `gpu_cases.ModelShape` written as an HF folder (config.json, f16
safetensors, a tiny trained BPE tokenizer: the model's vocabulary is padded past it, as the
tests' tiny models are), then compiled with `webllm_py.build` like any model and run by the
native runtime (`webllm_py.load`) with the program set forced to a GPU-class one ("gpu-sg"
where the adapter has subgroups, else "gpu") when the bundle has them, else "auto".

Measured: greedy decode tok/s through `forward_argmax` (what the engine runs at temperature 0:
one submission and a 4-byte readback per token, the next step recorded ahead), against the
weight-read bound = read bandwidth / the bytes of every weight buffer a decode step binds
(the embedding table counts only if another dispatch reads it too: a tied LM head), and the
per-kernel-family GPU time of one step (runtime/profile.py) when the device has timestamps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from gpu_cases import ModelShape


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(["a random-weight model for timing the decode step on a GPU"] * 20, trainer)
    return tok.to_str()


def write_random_llama(folder: Path, s: ModelShape, seed: int = 0) -> Path:
    """An HF llama folder of shape `s` with seeded random f16 weights (one block of random values
    tiled over every tensor: values do not change the speed, and tiling keeps this fast)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    hd = s.head_dim
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": s.hidden,
           "intermediate_size": s.ffn, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
           "num_key_value_heads": s.kv_heads, "head_dim": hd, "vocab_size": s.vocab, "rms_norm_eps": 1e-5,
           "rope_theta": 500000.0, "max_position_embeddings": 4096, "tie_word_embeddings": s.tied,
           "hidden_act": "silu", "bos_token_id": 0, "eos_token_id": 1, "torch_dtype": "float16"}
    block = (np.random.default_rng(seed).standard_normal(1 << 20) * 0.02).astype(np.float16)

    def rand(*shape: int) -> np.ndarray:
        return np.resize(block, shape)

    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": rand(s.vocab, s.hidden),
                                "model.norm.weight": np.ones(s.hidden, np.float16)}
    if not s.tied:
        t["lm_head.weight"] = rand(s.vocab, s.hidden)
    for i in range(s.layers):
        pre = f"model.layers.{i}."
        t[pre + "input_layernorm.weight"] = np.ones(s.hidden, np.float16)
        t[pre + "post_attention_layernorm.weight"] = np.ones(s.hidden, np.float16)
        t[pre + "self_attn.q_proj.weight"] = rand(s.heads * hd, s.hidden)
        t[pre + "self_attn.k_proj.weight"] = rand(s.kv_heads * hd, s.hidden)
        t[pre + "self_attn.v_proj.weight"] = rand(s.kv_heads * hd, s.hidden)
        t[pre + "self_attn.o_proj.weight"] = rand(s.hidden, s.heads * hd)
        t[pre + "mlp.gate_proj.weight"] = rand(s.ffn, s.hidden)
        t[pre + "mlp.up_proj.weight"] = rand(s.ffn, s.hidden)
        t[pre + "mlp.down_proj.weight"] = rand(s.hidden, s.ffn)
    save_file(t, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer.json").write_text(_tokenizer_json())
    (folder / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>"}))
    return folder


def decode_weight_bytes(manifest: dict[str, Any], program_set: str) -> int:
    """Bytes of the weight buffers one decode step reads (see the module docstring)."""
    from webllm_py.runtime.kv_sizing import buffer_bytes

    bufs, kernels = manifest["buffers"], manifest["kernels"]
    read: set[str] = set()
    for d in manifest["programs"][program_set]["decode"]["dispatches"]:
        if kernels[d["kernel"]]["key"]["family"] != "embedding":  # it reads one row of its table
            read.update(b for b in d["bindings"] if bufs[b].get("kind") == "weight")
    return sum(buffer_bytes(bufs[b], 4) for b in read)


def pick_set(programs: dict[str, Any], adapter: Any) -> str:
    if "gpu-sg" in programs and "subgroup" in adapter.features:
        return "gpu-sg"
    return "gpu" if "gpu" in programs else "auto"


def prepare_bundle(work: str, s: ModelShape, fmt: str, context_window: int = 1024) -> dict[str, Any]:
    """Write the random model into `work` and build its bundle: CPU only, so gpu_bench runs it in
    another process while the GPU times kernels (a 1B build takes a minute or more)."""
    import webllm_py

    t0 = time.perf_counter()
    folder = write_random_llama(Path(work) / "hf", s)
    t1 = time.perf_counter()
    out = webllm_py.build(folder, Path(work) / "bundle", quantization=fmt, progress=False,
                          context_window=context_window, prefill_chunk=min(128, context_window))
    return {"bundle": str(out), "shape": s.__dict__, "fmt": fmt, "write_s": t1 - t0,
            "build_s": time.perf_counter() - t1}


def run_decode(prep: dict[str, Any], bandwidth_gbps: float, tokens: int = 64, prompt: int = 16) -> dict[str, Any]:
    """Time the greedy decode of `prepare_bundle`'s bundle on the native runtime."""
    import webllm_py
    from webllm_py.bundle import Bundle
    from webllm_py.runtime.device import select_adapter

    t0 = time.perf_counter()
    manifest = Bundle(prep["bundle"]).manifest
    adapter = select_adapter()
    chosen = pick_set(manifest["programs"], adapter)
    res: dict[str, Any] = {**prep, "program_sets": list(manifest["programs"])}
    profile = "timestamp-query" in adapter.features
    try:
        model = webllm_py.load(prep["bundle"], precision=chosen, verify=False, adapter=adapter, profile=profile)
    except ValueError as e:  # a runtime that does not know this set's name yet
        res["forced_set_error"] = str(e)
        model = webllm_py.load(prep["bundle"], precision="auto", verify=False, adapter=adapter, profile=profile)
    res["precision"] = model.precision
    res["load_s"] = time.perf_counter() - t0
    ids = [2 + i % 250 for i in range(prompt)]
    tok = int(np.argmax(model.forward(ids)[-1]))
    for _ in range(4):  # warm-up: pipelines hot, encode-ahead primed
        tok = model.forward_argmax([tok])
    t1 = time.perf_counter()
    for _ in range(tokens):
        tok = model.forward_argmax([tok])
    dt = time.perf_counter() - t1
    wbytes = decode_weight_bytes(manifest, model.precision)
    res.update(tokens=tokens, position=model.position, decode_tok_s=tokens / dt, ms_per_token=dt / tokens * 1e3,
               weight_bytes_per_token=wbytes, bound_tok_s=bandwidth_gbps * 1e9 / wbytes)
    res["of_bound"] = res["decode_tok_s"] / res["bound_tok_s"]
    if profile:
        from webllm_py.runtime.profile import profile_step

        prof = profile_step(model, "decode", n=1, p=model.position)
        res["profile"] = {k: prof[k] for k in ("dispatches", "gpu_total_us", "wall_profiled_ms", "families")}
    model.close()
    return res
