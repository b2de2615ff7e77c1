"""The bundle writer: sharding, hashing, determinism, atomicity, and every bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import webllm_py
from conftest import make_tiny_model
from webllm_py.bundle import Bundle
from webllm_py.errors import BuildError, BundleVersionError, IntegrityError


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sharding_alignment_and_hashes(tiny_models, tmp_path):
    shard = 64 * 1024
    out = webllm_py.build(tiny_models["mistral"], tmp_path / "b", quantization="f32", shard_bytes=shard, progress=False)
    m = json.loads((out / "manifest.json").read_text())
    shards = sorted((out / "params").glob("*.bin"))
    assert len(shards) > 2
    parts_in = {}
    for w in m["weights"].values():
        for part in w["parts"].values():
            parts_in.setdefault(part["file"], []).append(part["nbytes"])
    for f in shards:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        assert f.stem == digest[:16]
        # a part never spans shards: only a shard holding one oversized part may exceed the limit
        sizes = parts_in[f"params/{f.name}"]
        assert f.stat().st_size <= shard or (len(sizes) == 1 and sizes[0] > shard)
    listed = {f["path"]: f for f in m["files"]}
    kernels = {f"kernels/{f.name}" for f in (out / "kernels").glob("*.wgsl")}
    assert kernels and all(hashlib.sha256((out / k).read_bytes()).hexdigest()[:16] == Path(k).stem for k in kernels)
    assert set(listed) == {f"params/{f.name}" for f in shards} | kernels | {"tokenizer.json", "tokenizer_config.json"}
    for rel, f in listed.items():
        data = (out / rel).read_bytes()
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
    for w in m["weights"].values():
        for part in w["parts"].values():
            assert part["offset"] % 256 == 0
            assert part["offset"] + part["nbytes"] <= listed[part["file"]]["size"]
    Bundle(out).verify()


def test_sharded_hf_checkpoint_with_index(tmp_path):
    """model-0000x-of-0000y.safetensors + model.safetensors.index.json import like one file."""
    import torch
    from transformers import AutoModelForCausalLM

    folder = make_tiny_model(tmp_path / "m", "llama")
    one = webllm_py.build(folder, tmp_path / "one", quantization="f32", progress=False)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    sharded = tmp_path / "sharded"
    hf.save_pretrained(sharded, max_shard_size="40KB")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folder / f, sharded / f)
    assert (sharded / "model.safetensors.index.json").exists()
    two = webllm_py.build(sharded, tmp_path / "two", quantization="f32", progress=False)
    ids = [3, 5, 7, 11, 13]
    np.testing.assert_array_equal(webllm_py.load(one, backend="reference").logits(ids),
                                  webllm_py.load(two, backend="reference").logits(ids))


def test_build_is_deterministic(tiny_models, tmp_path):
    a = webllm_py.build(tiny_models["qwen2"], tmp_path / "a", quantization="q4", progress=False)
    b = webllm_py.build(tiny_models["qwen2"], tmp_path / "b", quantization="q4", progress=False)
    assert tree_bytes(a) == tree_bytes(b)


def test_failed_build_leaves_nothing_and_keeps_old_bundle(tiny_models, tmp_path, monkeypatch):
    out = webllm_py.build(tiny_models["llama"], tmp_path / "b", quantization="q8", progress=False)
    before = tree_bytes(out)
    import webllm_py.bundle.writer as writer

    calls = {"n": 0}
    real = writer.quantize

    def failing(w, fmt):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk on fire")
        return real(w, fmt)

    monkeypatch.setattr(writer, "quantize", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        webllm_py.build(tiny_models["llama"], out, quantization="q4", progress=False)
    assert tree_bytes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no temp folders left behind
    calls["n"] = 0  # a fresh target: nothing appears
    with pytest.raises(RuntimeError, match="disk on fire"):
        webllm_py.build(tiny_models["llama"], tmp_path / "new", quantization="q4", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_refuses_to_replace_a_folder_that_is_not_a_bundle(tiny_models, tmp_path):
    keep = tmp_path / "mystuff"
    keep.mkdir()
    (keep / "notes.txt").write_text("precious")
    with pytest.raises(BuildError, match="not a webllm-py bundle"):
        webllm_py.build(tiny_models["llama"], keep, progress=False)
    assert (keep / "notes.txt").read_text() == "precious"


# -- bad inputs: each a BuildError naming the file, a one-line CLI error, no output ----------------

def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_config(folder: Path, **changes) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    (folder / "config.json").write_text(json.dumps(cfg))


def _truncate(folder: Path) -> None:
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _lying_header(folder: Path) -> None:
    f = folder / "model.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in header if k != "__metadata__")
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [start, end + 4096]  # claims more bytes than the shape needs
    hb = json.dumps(header).encode()
    hb += b" " * (-len(hb) % 8)
    f.write_bytes(len(hb).to_bytes(8, "little") + hb + raw[8 + n :])


def _wrong_shape(folder: Path) -> None:
    _edit_config(folder, intermediate_size=64)  # checkpoint has 100


def _extra_tensor(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    t = load_file(folder / "model.safetensors")
    t["model.layers.0.mlp.mystery.weight"] = np.zeros((2, 2), np.float32)
    save_file(t, folder / "model.safetensors")


def _missing_tensor(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    t = load_file(folder / "model.safetensors")
    del t["model.layers.1.mlp.down_proj.weight"]
    save_file(t, folder / "model.safetensors")


BAD_INPUTS = {
    "truncated_safetensors": (_truncate, "model.safetensors", "not a valid safetensors"),
    "header_lies_about_offsets": (_lying_header, "model.safetensors", "not a valid safetensors|offsets"),
    "tensor_shape_vs_config": (_wrong_shape, "model.safetensors", "has shape .* config implies"),
    "missing_config_key": (lambda f: _edit_config(f, hidden_size=None), "config.json", "missing required key 'hidden_size'"),
    "unknown_architecture": (lambda f: _edit_config(f, model_type="gpt_neox"), "config.json", "'gpt_neox' is not supported; supported: gemma2, gemma3"),
    "unreadable_tokenizer": (lambda f: (f / "tokenizer.json").write_text('{"model": 42}'), "tokenizer.json", "unreadable tokenizer"),
    "missing_tokenizer": (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json", "missing"),
    "config_not_json": (lambda f: (f / "config.json").write_text("{oops"), "config.json", "not valid JSON"),
    "unused_tensor": (_extra_tensor, "", "not used by the llama graph"),
    "missing_tensor": (_missing_tensor, "", "missing tensors: model.layers.1.mlp.down_proj.weight"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_clear_error_and_no_output(case, tiny_models, tmp_path):
    breaker, file_name, pattern = BAD_INPUTS[case]
    folder = _copy_model(tiny_models["llama"], tmp_path / "model")
    breaker(folder)
    out = tmp_path / "out"
    with pytest.raises(BuildError, match=pattern) as info:
        webllm_py.build(folder, out, progress=False)
    assert str(folder) in str(info.value) and file_name in str(info.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    proc = subprocess.run([sys.executable, "-m", "webllm_py.cli", "build", str(folder), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    assert not out.exists()


def test_bundle_version_and_integrity_checks(tiny_bundles, tmp_path):
    b = shutil.copytree(tiny_bundles("llama", "q4"), tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    shard = b / m["files"][0]["path"]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        webllm_py.load(b, backend="reference")
    m["format_version"] = "2.0"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleVersionError, match="format version 2.0 is not supported"):
        webllm_py.load(b, backend="reference")


def test_inspect_reports_quantization_error(tiny_bundles):
    proc = subprocess.run([sys.executable, "-m", "webllm_py.cli", "inspect", str(tiny_bundles("llama", "q4"))],
                          capture_output=True, text=True, check=True)
    assert "quantization q4" in proc.stdout and "rel rms" in proc.stdout
    from webllm_py.cli import inspect_summary

    s = inspect_summary(tiny_bundles("llama", "q4"))
    assert 0.05 < s["weights_by_format"]["q4"]["relative_rms_err"] < 0.2


def test_hub_id_offline_gives_a_clear_error(tmp_path, monkeypatch):
    """A Hub id resolves through huggingface_hub; offline (HF_HUB_OFFLINE=1, so no connection is
    even attempted) the build fails with one line that names the model and says what to do."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # an empty cache
    proc = subprocess.run([sys.executable, "-m", "webllm_py.cli", "build", "HuggingFaceTB/NoSuchModel-1M", "-o",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "HuggingFaceTB/NoSuchModel-1M" in lines[0] and "offline?" in lines[0]
    assert not (tmp_path / "out").exists()
