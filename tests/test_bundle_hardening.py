"""Issue 15, bundles: what a hostile run broke in build/load, each kept fixed by a test.

- build never replaces a folder that is not its own bundle (a web app folder with a manifest.json);
- SIGKILLed builds' temp folders are cleaned up by the next build (dead pids only);
- the reader validates manifest.json against itself (paths, parts vs formats, overlaps, KV rows
  vs context_window, generation defaults) with one BundleError naming manifest.json and the field;
- a bounded property-based fuzz of the reader: any mutation loads or raises BundleError.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

import webllm_py
from webllm_py.bundle import Bundle
from webllm_py.errors import BuildError, BundleError


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def copy_bundle(src: Path, dst: Path, edit: Callable[[dict], Any] | None = None) -> Path:
    shutil.copytree(src, dst)
    if edit is not None:
        m = json.loads((dst / "manifest.json").read_text())
        edit(m)
        (dst / "manifest.json").write_text(json.dumps(m))
    return dst


def one_line_error(exc: pytest.ExceptionInfo, *needles: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


# -- item 1: build replaces only its own bundle -----------------------------------------------

def _web_app(folder: Path) -> None:  # a PWA: its own manifest.json beside the page
    folder.mkdir()
    (folder / "manifest.json").write_text('{"name": "My PWA", "start_url": ".", "display": "standalone"}')
    (folder / "index.html").write_text("<!doctype html><title>mine</title>")
    (folder / "icons").mkdir()
    (folder / "icons" / "icon.png").write_bytes(bytes(range(256)))


def _bundle_plus_page(folder: Path, bundle: Path) -> None:  # a real manifest, but the folder holds more
    shutil.copytree(bundle, folder)
    (folder / "index.html").write_text("<!doctype html><title>my page around the bundle</title>")


def _with_manifest(text: str) -> Callable[[Path, Path], None]:  # a folder: this manifest.json and a file
    def make(folder: Path, bundle: Path) -> None:
        folder.mkdir()
        (folder / "manifest.json").write_text(text)
        (folder / "a.txt").write_text("x")
    return make


def _manifest_folder(folder: Path, bundle: Path) -> None:
    (folder / "manifest.json").mkdir(parents=True)
    (folder / "manifest.json" / "x").write_text("y")


FOREIGN_OUTPUTS: dict[str, Callable[[Path, Path], None]] = {
    "web_app_manifest": lambda f, b: _web_app(f),
    "bundle_manifest_plus_user_files": _bundle_plus_page,
    "manifest_not_json": _with_manifest("{oops"),
    "manifest_nested_too_deep": _with_manifest("[" * 100_000 + "]" * 100_000),
    "manifest_is_a_folder": _manifest_folder,
    "output_is_a_file": lambda f, b: f.write_text("not a folder"),
}


@pytest.mark.parametrize("case", list(FOREIGN_OUTPUTS))
def test_build_refuses_to_replace_a_folder_that_is_not_its_bundle(case, tiny_models, tiny_bundles, tmp_path):
    """Before the fix any folder holding a manifest.json was replaced wholesale (data loss)."""
    out = tmp_path / "pwa"
    FOREIGN_OUTPUTS[case](out, tiny_bundles("llama", "f32"))
    before = tree_bytes(out) if out.is_dir() else out.read_bytes()
    with pytest.raises(BuildError) as e:
        webllm_py.build(tiny_models["llama"], out, quantization="f32", progress=False)
    one_line_error(e, str(out), "refusing to replace it")
    assert (tree_bytes(out) if out.is_dir() else out.read_bytes()) == before  # byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pwa"]  # no temp folder left either


def test_build_refuses_a_bundle_folder_it_cannot_list_whole(tiny_models, tiny_bundles, tmp_path, monkeypatch):
    """A subfolder that cannot be read (permissions; simulated, since root reads everything) may
    hold the user's files: os.walk skips it silently unless asked, so build must not replace."""
    import webllm_py.bundle.ownership as ownership

    out = shutil.copytree(tiny_bundles("llama", "f32"), tmp_path / "b")
    (out / "private").mkdir()
    (out / "private" / "notes.txt").write_text("mine")
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # os.walk's behaviour for an unreadable folder
        for root, dirs, files in real_walk(top, onerror=onerror, **kw):
            if Path(root).name == "private":
                if onerror is not None:
                    onerror(PermissionError(13, "Permission denied", root))
                continue
            yield root, dirs, files

    monkeypatch.setattr(ownership.os, "walk", walk)
    with pytest.raises(BuildError) as e:
        webllm_py.build(tiny_models["llama"], out, quantization="f32", progress=False)
    one_line_error(e, str(out), "cannot list", "refusing to replace it")
    assert (out / "private" / "notes.txt").read_text() == "mine"


def test_build_replaces_its_own_bundle(tiny_models, tmp_path):
    out = webllm_py.build(tiny_models["llama"], tmp_path / "b", quantization="q8", progress=False)
    webllm_py.build(tiny_models["llama"], out, quantization="f32", progress=False)
    assert json.loads((out / "manifest.json").read_text())["quantization"]["scheme"] == "f32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


# -- item 9: temp folders of SIGKILLed builds ------------------------------------------------------

def _temp_dir_of_child(out: Path, then: str) -> tuple[subprocess.Popen, Path]:
    """A child process that makes its temp folder beside `out` (as a build does), prints it, then `then`."""
    code = ("import os, signal, sys, time; from pathlib import Path; from webllm_py.atomic import temp_dir_beside\n"
            "t = temp_dir_beside(Path(sys.argv[1])); (t / 'params').mkdir(); (t / 'params' / 'x.bin').write_bytes(b'1')\n"
            f"print(t, flush=True); {then}")
    proc = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    return proc, Path(proc.stdout.readline().strip())


def test_next_build_removes_temp_folders_of_dead_builds_only(tiny_models, tmp_path):
    """A SIGKILLed build leaves its temp folder; the next build into the same parent removes it
    (and a dead build's of another target there), never a live process's, nor anything else."""
    out = tmp_path / "b"
    killed, stale = _temp_dir_of_child(out, "os.kill(os.getpid(), signal.SIGKILL)")
    killed_other, stale_other = _temp_dir_of_child(tmp_path / "c", "os.kill(os.getpid(), signal.SIGKILL)")
    live, live_dir = _temp_dir_of_child(out, "time.sleep(120)")
    try:
        assert killed.wait() == -9 and killed_other.wait() == -9
        assert stale.is_dir() and stale_other.is_dir() and live_dir.is_dir()
        foreign = [tmp_path / ".b.tmp-abc12345", tmp_path / ".notes", tmp_path / "b.tmp-1-x", tmp_path / ".b.old-1"]
        for f in foreign:
            f.mkdir()
            (f / "keep.txt").write_text("mine")

        webllm_py.build(tiny_models["llama"], out, quantization="f32", progress=False)

        assert not stale.exists() and not stale_other.exists()
        assert (live_dir / "params" / "x.bin").read_bytes() == b"1"
        assert all((f / "keep.txt").read_text() == "mine" for f in foreign)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["b", live_dir.name, *(f.name for f in foreign)])
    finally:
        live.kill()
        live.wait()


# -- item 5: the manifest validated against itself ------------------------------------------------

def _first_weight(m: dict, ndim: int = 2) -> str:
    return next(n for n, w in m["weights"].items() if len(w["shape"]) == ndim)


def _overlap(m: dict) -> None:
    names = [n for n, w in m["weights"].items() if len(w["shape"]) == 2]
    a, b = m["weights"][names[0]]["parts"]["data"], m["weights"][names[1]]["parts"]["data"]
    b["file"], b["offset"] = a["file"], a["offset"]  # b reads a's bytes


def _unlisted(m: dict) -> None:
    m["weights"][_first_weight(m)]["parts"]["data"]["file"] = "params/0000000000000000.bin"


def _part_bytes(m: dict) -> None:
    m["weights"][_first_weight(m)]["parts"]["data"]["nbytes"] += 256


def _kernel_path(m: dict, path: str) -> None:
    m["kernels"][next(iter(m["kernels"]))]["file"] = path


def _file_path(m: dict, path: str) -> None:
    old = m["files"][0]["path"]
    m["files"][0]["path"] = path
    for w in m["weights"].values():
        for r in w["parts"].values():
            if r["file"] == old:
                r["file"] = path


def _context(m: dict) -> None:
    m["context_window"] *= 2  # the KV buffers (and the graph's state) keep the built rows


MANIFEST_CASES: dict[str, tuple[Callable[[dict], None], str]] = {
    "parts_overlap": (_overlap, r'weights\["[^"]+"\]\.parts\.data: \d+ bytes at offset \d+ overlap weights\["'),
    "part_in_unlisted_file": (_unlisted, r'weights\["[^"]+"\]\.parts\.data\.file: .*not listed in files'),
    "part_size_vs_format": (_part_bytes, r'weights\["[^"]+"\]\.parts\.data\.nbytes: .*q4 needs'),
    "kernel_path_traversal": (lambda m: _kernel_path(m, "../../../../etc/hostname"), r'kernels\["[^"]+"\]\.file: .*\.\.'),
    "kernel_path_absolute": (lambda m: _kernel_path(m, "/etc/hostname"), r'kernels\["[^"]+"\]\.file: .*absolute'),
    "kernel_path_unlisted": (lambda m: _kernel_path(m, "kernels/0000.wgsl"), r'kernels\["[^"]+"\]\.file: .*not listed'),
    "file_path_dotdot": (lambda m: _file_path(m, "../outside.bin"), r"files\[0\]\.path: .*\.\."),
    "file_path_absolute": (lambda m: _file_path(m, "/tmp/outside.bin"), r"files\[0\]\.path: .*absolute"),
    "file_path_backslash": (lambda m: _file_path(m, "params\\x.bin"), r"files\[0\]\.path: .*backslash"),
    "tokenizer_path_dotdot": (lambda m: m["tokenizer"].update(file="../tokenizer.json"), r"tokenizer\.file: .*\.\."),
    "context_window_beyond_kv_rows": (_context, r"context_window: 512 .*256 rows"),
    "vocab_size_not_int": (lambda m: m["model"]["config"].update(vocab_size="320"), r"model\.config\.vocab_size: .*integer"),
}


@pytest.mark.parametrize("backend", ["reference", "native"])
@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_manifest_is_validated_against_itself(case, backend, tiny_bundles, tmp_path):
    """Before the fix these loaded (overlap, unlisted file, context beyond the KV rows: garbage),
    read /etc/hostname as WGSL, or failed later with a traceback (KeyError/ValueError/assert)."""
    edit, pattern = MANIFEST_CASES[case]
    b = copy_bundle(tiny_bundles("llama", "q4"), tmp_path / "b", edit)
    with pytest.raises(BundleError, match=pattern) as e:
        webllm_py.load(b, backend=backend)
    assert str(e.value).startswith(f"{b / 'manifest.json'}: ")
    one_line_error(e)


# -- item 10: generation defaults ------------------------------------------------------------------

GENERATION_CASES: dict[str, tuple[str, Any]] = {
    "temperature_string": ("temperature", "hot"),
    "temperature_negative": ("temperature", -0.5),
    "temperature_nan": ("temperature", math.nan),
    "temperature_bool": ("temperature", True),
    "top_p_zero": ("top_p", 0),
    "top_p_above_one": ("top_p", 1.5),
    "repetition_penalty_zero": ("repetition_penalty", 0),
    "repetition_penalty_list": ("repetition_penalty", [1.1]),
    "do_sample_string": ("do_sample", "yes"),
    "eos_ids_not_list": ("eos_token_ids", 1),
    "eos_id_outside_vocab": ("eos_token_ids", [100000]),
    "eos_id_negative": ("eos_token_ids", [-1]),
}


@pytest.mark.parametrize("case", list(GENERATION_CASES))
def test_generation_defaults_are_validated_at_load(case, tiny_bundles, tmp_path):
    """Before the fix `temperature: "hot"` loaded and every request then failed on it."""
    key, value = GENERATION_CASES[case]
    b = copy_bundle(tiny_bundles("llama", "f32"), tmp_path / "b", lambda m: m["generation"].update({key: value}))
    with pytest.raises(BundleError, match=rf"manifest\.json: generation\.{key}") as e:
        webllm_py.load(b, backend="reference")
    one_line_error(e)


def test_valid_generation_defaults_still_load(tiny_bundles, tmp_path):
    ok = {"temperature": 0, "top_p": 1, "repetition_penalty": 1.1, "do_sample": False, "eos_token_ids": [1],
          "top_k": None}  # null: the engines' default, as Engine reads it
    b = copy_bundle(tiny_bundles("llama", "f32"), tmp_path / "b", lambda m: m["generation"].update(ok))
    assert webllm_py.load(b, backend="reference").manifest["generation"]["repetition_penalty"] == 1.1


BUILD_VARIANTS: dict[str, dict[str, Any]] = {  # what the current compiler writes must pass
    "q4a_f16_embedding": dict(quantization="q4a", embedding_format="f16"),
    "q8_unfused": dict(quantization="q8", fuse=False),
    "f16_sliced_weights": dict(quantization="f16", max_binding_bytes=4096, shard_bytes=8192),
}


@pytest.mark.parametrize("variant", list(BUILD_VARIANTS))
def test_bundles_the_compiler_writes_pass_validation(variant, tiny_models, tmp_path):
    out = webllm_py.build(tiny_models["qwen3"], tmp_path / "b", progress=False, **BUILD_VARIANTS[variant])
    Bundle(out).verify()  # reading validates; verify checks the hashes the validation relies on


def test_bundle_without_programs_still_reads(tiny_bundles, tmp_path):
    """Bundles of the first format (graphs + weights, no programs/buffers/kernels) stay readable
    on the reference backend; the native one says to rebuild."""
    def strip(m: dict) -> None:
        for k in ("programs", "buffers", "kernels", "wgsl_language_features"):
            m.pop(k)
        m["files"] = [f for f in m["files"] if not f["path"].startswith("kernels/")]

    b = copy_bundle(tiny_bundles("llama", "f32"), tmp_path / "b", strip)
    shutil.rmtree(b / "kernels")
    assert webllm_py.load(b, backend="reference").logits([1, 2, 3]).shape == (3, 320)
    with pytest.raises(BundleError, match="no programs"):
        webllm_py.load(b, backend="native")


# -- property-based fuzz of the reader and validator -----------------------------------------------

HOSTILE = [None, True, False, 0, -1, 1.5, -(2**63), 2**64, 10**30, math.inf, math.nan, "", "..", "../../../../etc/hostname",
           "/etc/hostname", "C:\\x", "params\\x.bin", "ü\u202e\u0000", "kernels/./x.wgsl", [], {}, [1, "a"], {"a": 1}]


def _slots(obj: Any, at: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) to a value inside obj."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    out = []
    for k, v in items:
        out.append((*at, k))
        out.extend(_slots(v, (*at, k)))
    return out


def _mutate(m: dict, path: tuple, action: str, value: Any) -> None:
    parent = m
    for k in path[:-1]:
        parent = parent[k]
    key, old = path[-1], parent[path[-1]]
    if action == "delete":
        del parent[key]
    elif action == "escape" and isinstance(old, str):
        parent[key] = "../" + old.replace("/", "\\")
    elif action == "scale" and isinstance(old, (int, float)) and not isinstance(old, bool):
        parent[key] = -old - 1 if value is None else old * 1_000_003 + 7
    else:
        parent[key] = value


@pytest.fixture(scope="module")
def fuzz_bundle(tiny_bundles, tmp_path_factory) -> tuple[Path, dict]:
    b = copy_bundle(tiny_bundles("llama", "q4"), tmp_path_factory.mktemp("fuzz") / "b")
    return b, json.loads((b / "manifest.json").read_text())


def test_fuzzed_manifests_load_or_raise_bundle_error(fuzz_bundle):
    """Random edits of a valid manifest (deleted keys, wrong types, huge/negative ints, hostile path
    strings) either load on the reference backend or raise BundleError, one line; any other
    exception (KeyError, TypeError, IndexError, ...) is a reader bug. Bounded: 100 examples (~3 s),
    derandomized (the same ones every run), no example database written."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    folder, base = fuzz_bundle
    base_text = json.dumps(base)
    sections = sorted(base)
    outcomes = {"loaded": 0, "refused": 0}

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def check(data):
        m = json.loads(base_text)  # a fresh deep copy
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            section = data.draw(st.sampled_from(sorted(m) or sections), label="section")
            if section not in m:
                m[section] = data.draw(st.sampled_from(HOSTILE), label="new value")
                continue
            if not isinstance(m[section], (dict, list)):
                path = (section,)
            else:
                slots = [(section,)] + [(section, *s) for s in _slots(m[section])]
                path = data.draw(st.sampled_from(slots), label="path")
            action = data.draw(st.sampled_from(["delete", "replace", "escape", "scale"]), label="action")
            value = data.draw(st.sampled_from(HOSTILE) | st.integers() | st.text(max_size=6), label="value")
            _mutate(m, path, action, value)
        (folder / "manifest.json").write_text(json.dumps(m))
        try:
            webllm_py.load(folder, backend="reference")
            outcomes["loaded"] += 1
        except BundleError as e:
            assert "\n" not in str(e) and str(e).startswith(f"{folder}/"), e  # one line, names the file
            outcomes["refused"] += 1

    check()
    assert outcomes["refused"] > 0
    print(f"manifest fuzz: {sum(outcomes.values())} mutated manifests, {outcomes['refused']} refused with "
          f"BundleError, {outcomes['loaded']} loaded, 0 other exceptions")


def test_native_kernel_that_does_not_compile_is_a_bundle_error(tiny_bundles, tmp_path):
    """A consistent but hostile bundle (its files list hashes the bad WGSL, so verify passes):
    the shader compiler's multi-line GPUValidationError became one BundleError naming the kernel."""
    import hashlib

    def break_first_kernel(m: dict) -> None:
        kname = m["programs"]["f32"]["decode"]["dispatches"][0]["kernel"]
        rel = m["kernels"][kname]["file"]
        (b / rel).write_text("this is not WGSL")
        entry = next(f for f in m["files"] if f["path"] == rel)
        entry.update(size=len("this is not WGSL"), sha256=hashlib.sha256(b"this is not WGSL").hexdigest())

    b = tmp_path / "b"
    copy_bundle(tiny_bundles("llama", "f32"), b, break_first_kernel)
    with pytest.raises(BundleError) as e:
        webllm_py.load(b, backend="native", precision="f32")
    one_line_error(e, "kernels/", "does not compile")
