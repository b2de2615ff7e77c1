"""Fault injection against both Python runtimes (issue 15): a tiny bundle's every listed file
flipped, truncated and missing, and a table of manifest edits; each attempt must be refused
at load with BundleError (IntegrityError for file damage), one line naming the file, never
another exception and never a silent load.

The file cases come from the bundle's own manifest, so the bundle is built once at collection
(pytest_generate_tests; a few seconds). Each case loads a fresh copy: no GPU work happens for
a refused bundle, so the native cases cost what the reference ones do.
"""

from __future__ import annotations

import atexit
import collections
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import webllm_py
from webllm_py.errors import BundleError, BundleVersionError, IntegrityError

BACKENDS = ("reference", "native")
_BUILT: dict[str, Path] = {}
OUTCOMES: collections.Counter = collections.Counter()


def tiny_bundle() -> Path:
    """A tiny llama q4 bundle, built once per process (it decides the file cases)."""
    if "dir" not in _BUILT:
        from conftest import make_tiny_model

        root = Path(tempfile.mkdtemp(prefix="webllm-faults-"))
        atexit.register(shutil.rmtree, root, True)
        model = make_tiny_model(root / "model", "llama")
        _BUILT["dir"] = webllm_py.build(model, root / "bundle", quantization="q4", progress=False, prefill_chunk=16)
    return _BUILT["dir"]


def pytest_generate_tests(metafunc):
    if "listed_file" in metafunc.fixturenames:
        files = [f["path"] for f in json.loads((tiny_bundle() / "manifest.json").read_text())["files"]]
        metafunc.parametrize("listed_file", files)


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    line = (f"fault injection: {OUTCOMES['attempts']} attempts on {len(BACKENDS)} backends, "
            f"{OUTCOMES['refused']} refused with a one-line BundleError naming the file")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # shown with -q too, not only with -s
        print(f"\n{line}")


def refused(bundle: Path, backend: str, names: str, error: type = BundleError) -> str:
    """Load must raise `error` whose one-line message names `names` (a path inside `bundle`)."""
    OUTCOMES["attempts"] += 1
    with pytest.raises(BundleError) as e:
        webllm_py.load(bundle, backend=backend)
    msg = str(e.value)
    assert isinstance(e.value, error), f"{type(e.value).__name__}: {msg}"
    assert "\n" not in msg and msg.startswith(f"{bundle / names}: "), msg
    OUTCOMES["refused"] += 1
    return msg


# -- every listed file: flipped, truncated, missing -------------------------------------------

def _flip(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one byte
    p.write_bytes(bytes(data))


FILE_FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "flipped": (_flip, "sha256 does not match"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "size"),
    "missing": (lambda p: p.unlink(), "missing"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", list(FILE_FAULTS))
def test_damaged_file_is_refused(listed_file, fault, backend, tmp_path):
    b = shutil.copytree(tiny_bundle(), tmp_path / "b")
    damage, what = FILE_FAULTS[fault]
    damage(b / listed_file)
    assert what in refused(b, backend, listed_file, IntegrityError)


# -- manifest edits ------------------------------------------------------------------------------

def _weight(m: dict, ndim: int = 2, i: int = 0) -> dict:
    return [w for w in m["weights"].values() if len(w["shape"]) == ndim][i]


def _data(m: dict, i: int = 0) -> dict:
    return _weight(m, 2, i)["parts"]["data"]


def _kernel(m: dict) -> dict:
    return next(iter(m["kernels"].values()))


def _dispatch(m: dict) -> dict:
    return m["programs"]["f32"]["decode"]["dispatches"][0]


def _set(path: str, value: Any) -> Callable[[dict], None]:
    """An edit setting a dotted path (top-level or nested dict keys) to value; None deletes it."""
    def edit(m: dict) -> None:
        *parents, last = path.split(".")
        d = m
        for k in parents:
            d = d[k]
        if value is None:
            del d[last]
        else:
            d[last] = value(m) if callable(value) else value
    return edit


def _shard(m: dict) -> str:
    return _data(m)["file"]


def _unlist_shard(m: dict) -> None:
    m["files"] = [f for f in m["files"] if f["path"] != _shard(m)]


def _overlap(m: dict) -> None:
    a, b = _data(m, 0), _data(m, 1)
    b["file"], b["offset"] = a["file"], a["offset"]


def _past_end(m: dict) -> None:
    size = next(f["size"] for f in m["files"] if f["path"] == _shard(m))
    _data(m)["offset"] = size // 256 * 256


def _part_in_kernel(m: dict) -> None:  # a norm's 256 bytes fit inside a kernel's WGSL text
    _weight(m, 1)["parts"]["data"].update(file=_kernel(m)["file"], offset=0)


def _node(m: dict, op: str) -> dict:
    return next(n for n in m["graphs"]["logits_all"]["nodes"] if n["op"] == op)


def _wrong_value_shape(m: dict) -> None:  # the embedding's output declared one feature wider
    shape = m["graphs"]["logits_all"]["values"][_node(m, "embedding")["outputs"][0]]["shape"]
    shape[-1] += 1


def _shrink_kv(m: dict) -> None:
    for b in m["buffers"].values():
        if b["kind"] == "state":
            b["elements"] //= 2


def _graph_state_rows(m: dict) -> None:
    for v in m["graphs"]["logits_last"]["state"].values():
        v["shape"][0] //= 2


def _weight_buffer(m: dict) -> None:
    next(b for b in m["buffers"].values() if b["kind"] == "weight")["bytes"] += 4


def _drop_weight(m: dict) -> None:
    del m["weights"][next(n for n, w in m["weights"].items() if len(w["shape"]) == 2)]


def _dup_file(m: dict) -> None:
    m["files"].append(dict(m["files"][0]))


def _kernel_file(path: str) -> Callable[[dict], None]:
    return lambda m: _kernel(m).update(file=path)


def _file_path(path: str) -> Callable[[dict], None]:
    def edit(m: dict) -> None:
        old = m["files"][0]["path"]
        m["files"][0]["path"] = path
        for w in m["weights"].values():
            for r in w["parts"].values():
                r["file"] = path if r["file"] == old else r["file"]
    return edit


# name -> (edit of the parsed manifest, or raw bytes for manifest.json; the error's field; its class)
MANIFEST_EDITS: dict[str, tuple[Callable[[dict], None] | bytes, str, type]] = {
    "not_json": (b"{oops", "manifest is not valid JSON", BundleError),
    "not_utf8": (b'\xff\xfe{"format": 1}', "manifest is not valid JSON", BundleError),
    "empty": (b"", "manifest is not valid JSON", BundleError),
    "top_level_list": (b"[]", "manifest is not a JSON object", BundleError),
    "nested_too_deep": (b"[" * 100_000 + b"]" * 100_000, "manifest is not valid JSON", BundleError),
    "format_missing": (_set("format", None), "not a webllm-py bundle manifest", BundleError),
    "format_version_2": (_set("format_version", "2.0"), "format version 2.0 is not supported", BundleVersionError),
    "format_version_garbage": (_set("format_version", "x.y"), "bad format_version", BundleError),
    "files_missing": (_set("files", None), "files: missing required key", BundleError),
    "files_not_a_list": (_set("files", {}), "files: {} must be a list", BundleError),
    "file_path_dotdot": (_file_path("../outside.bin"), "files[0].path:", BundleError),
    "file_path_absolute": (_file_path("/etc/hostname"), "files[0].path:", BundleError),
    "file_path_backslash": (_file_path("params\\x.bin"), "files[0].path:", BundleError),
    "file_path_url": (_file_path("http://example.org/x.bin"), "files[0].path:", BundleError),
    "file_path_empty_part": (_file_path("params//x.bin"), "files[0].path:", BundleError),
    "file_size_negative": (lambda m: m["files"][0].update(size=-1), "files[0].size:", BundleError),
    "file_size_string": (lambda m: m["files"][0].update(size="12"), "files[0].size:", BundleError),
    "file_sha_uppercase": (lambda m: m["files"][0].update(sha256=m["files"][0]["sha256"].upper()), "files[0].sha256:",
                           BundleError),
    "file_listed_twice": (_dup_file, ".path: ", BundleError),
    "shard_unlisted": (_unlist_shard, ".parts.data.file: ", BundleError),
    "model_missing": (_set("model", None), "model: missing required key", BundleError),
    "vocab_size_zero": (_set("model.config.vocab_size", 0), "model.config.vocab_size:", BundleError),
    "vocab_size_string": (_set("model.config.vocab_size", "320"), "model.config.vocab_size:", BundleError),
    "vocab_size_beyond_graph": (_set("model.config.vocab_size", 321), "shape: output width", BundleError),
    "context_window_zero": (_set("context_window", 0), "context_window:", BundleError),
    "context_window_string": (_set("context_window", "256"), "context_window:", BundleError),
    "context_window_bool": (_set("context_window", True), "context_window:", BundleError),
    "context_window_float": (_set("context_window", 1.5), "context_window:", BundleError),
    "context_window_huge": (_set("context_window", 10**20), "context_window:", BundleError),
    "context_window_doubled": (_set("context_window", lambda m: 2 * m["context_window"]), "context_window:",
                               BundleError),
    "prefill_chunk_zero": (_set("prefill_chunk", 0), "prefill_chunk:", BundleError),
    "prefill_chunk_beyond_context": (_set("prefill_chunk", lambda m: m["context_window"] + 1), "prefill_chunk:",
                                     BundleError),
    "prefill_chunk_beyond_ids": (_set("prefill_chunk", 32), "prefill_chunk: 32 needs", BundleError),
    "tokenizer_missing": (_set("tokenizer", None), "tokenizer: missing", BundleError),
    "tokenizer_dotdot": (_set("tokenizer.file", "../tokenizer.json"), "tokenizer.file:", BundleError),
    "tokenizer_unlisted": (_set("tokenizer.file", "tok.json"), "tokenizer.file:", BundleError),
    "tokenizer_config_absolute": (_set("tokenizer.config_file", "/etc/passwd"), "tokenizer.config_file:", BundleError),
    "eos_outside_vocab": (_set("tokenizer.eos_token_ids", [320]), "tokenizer.eos_token_ids[0]:", BundleError),
    "bos_negative": (_set("tokenizer.bos_token_id", -1), "tokenizer.bos_token_id:", BundleError),
    "temperature_hot": (_set("generation.temperature", "hot"), "generation.temperature:", BundleError),
    "temperature_nan": (_set("generation.temperature", math.nan), "generation.temperature:", BundleError),
    "top_p_two": (_set("generation.top_p", 2), "generation.top_p:", BundleError),
    "repetition_penalty_negative": (_set("generation.repetition_penalty", -1), "generation.repetition_penalty:",
                                    BundleError),
    "do_sample_int": (_set("generation.do_sample", 1), "generation.do_sample:", BundleError),
    "generation_eos_strings": (_set("generation.eos_token_ids", ["1"]), "generation.eos_token_ids[0]:", BundleError),
    "weights_missing": (_set("weights", None), "weights: missing", BundleError),
    "weight_format_unknown": (lambda m: _weight(m).update(format="q3"), ".format:", BundleError),
    "weight_shape_changed": (lambda m: _weight(m).update(shape=[1, 1]), ".parts.data.shape:", BundleError),
    "weight_dropped": (_drop_weight, "is not in weights", BundleError),
    "weight_extra_part": (lambda m: _weight(m)["parts"].update(bias=_data(m)), ".parts:", BundleError),
    "part_nbytes": (lambda m: _data(m).update(nbytes=_data(m)["nbytes"] + 256), ".parts.data.nbytes:", BundleError),
    "part_dtype": (lambda m: _data(m).update(dtype="f64"), ".parts.data.dtype:", BundleError),
    "part_offset_unaligned": (lambda m: _data(m).update(offset=_data(m)["offset"] + 4), ".parts.data.offset:",
                              BundleError),
    "part_offset_negative": (lambda m: _data(m).update(offset=-256), ".parts.data.offset:", BundleError),
    "part_past_file_end": (_past_end, "end past", BundleError),
    "parts_overlap": (_overlap, "overlap", BundleError),
    "part_in_kernel_file": (_part_in_kernel, ".parts.data.file:", BundleError),
    "part_file_dotdot": (lambda m: _data(m).update(file="../../../../etc/hostname"), ".parts.data.file:", BundleError),
    "graphs_missing": (_set("graphs", None), "graphs: missing", BundleError),
    "graph_state_rows": (_graph_state_rows, "context_window:", BundleError),
    "graph_unknown_op": (lambda m: m["graphs"]["logits_all"]["nodes"][0].update(op="fft"), ".op:", BundleError),
    "graph_unknown_input": (lambda m: m["graphs"]["logits_all"]["nodes"][1].update(inputs=["nope"]), ".inputs[0]:",
                            BundleError),
    "graph_node_input_dropped": (lambda m: _node(m, "linear")["inputs"].pop(), ".nodes[", BundleError),
    "graph_value_shape_wrong": (_wrong_value_shape, ".nodes[0]: op embedding gives shapes", BundleError),
    "graph_attr_wrong": (lambda m: _node(m, "attention")["attrs"].update(heads=3), ".nodes[", BundleError),
    "graph_bad_dim": (lambda m: next(iter(m["graphs"]["logits_all"]["values"].values())).update(shape=["n**2"]),
                      ".shape[0]:", BundleError),
    "kv_buffers_halved": (_shrink_kv, "context_window:", BundleError),
    "ids_buffer_small": (_set("buffers.ids.elements", 8), "prefill_chunk:", BundleError),
    "logits_buffer_missing": (_set("buffers.logits", None), "\"logits\" is not in buffers", BundleError),
    "weight_buffer_past_part": (_weight_buffer, "end past", BundleError),
    "buffer_kind_unknown": (_set("buffers.ids.kind", "magic"), "buffers.ids.kind:", BundleError),
    "kernel_file_traversal": (_kernel_file("../../../../etc/hostname"), ".file:", BundleError),
    "kernel_file_unlisted": (_kernel_file("kernels/0000000000000000.wgsl"), ".file:", BundleError),
    "kernel_binding_kind": (lambda m: _kernel(m)["bindings"][0].__setitem__(1, "write"), ".bindings[0]:", BundleError),
    "kernel_workgroup_zero": (lambda m: _kernel(m).update(workgroup_size=[0, 1, 1]), ".workgroup_size[0]:", BundleError),
    "dispatch_unknown_kernel": (lambda m: _dispatch(m).update(kernel="nope"), "dispatches[0].kernel:", BundleError),
    "dispatch_unknown_buffer": (lambda m: _dispatch(m)["bindings"].__setitem__(0, "nope"), "dispatches[0].bindings[0]:",
                                BundleError),
    "dispatch_binding_count": (lambda m: _dispatch(m)["bindings"].pop(), "dispatches[0].bindings:", BundleError),
    "dispatch_workgroups_code": (lambda m: _dispatch(m).update(workgroups=["__import__('os')", 1, 1]),
                                 "dispatches[0].workgroups[0]:", BundleError),
    "program_missing": (lambda m: m["programs"]["f32"].pop("decode"), "programs.f32.decode: missing", BundleError),
    "language_features_not_list": (_set("wgsl_language_features", {"idot": "x"}), "wgsl_language_features.idot:",
                                   BundleError),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(MANIFEST_EDITS))
def test_edited_manifest_is_refused(case, backend, tmp_path):
    b = shutil.copytree(tiny_bundle(), tmp_path / "b")
    edit, field, error = MANIFEST_EDITS[case]
    if isinstance(edit, bytes):
        (b / "manifest.json").write_bytes(edit)
    else:
        m = json.loads((b / "manifest.json").read_text())
        edit(m)
        (b / "manifest.json").write_text(json.dumps(m))
    assert field in refused(b, backend, "manifest.json", error)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_intact_bundle_loads(backend, tmp_path):
    """The control: without a fault both runtimes load the copy and give finite logits, so the
    refusals above are the faults', not the harness's."""
    b = shutil.copytree(tiny_bundle(), tmp_path / "b")
    logits = webllm_py.load(b, backend=backend).logits([1, 2, 3])
    assert logits.shape == (3, 320) and np.isfinite(logits).all()
