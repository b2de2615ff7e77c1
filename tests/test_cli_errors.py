"""Every user error of the command line is one line naming the input, never a traceback.

Each case runs `webllm_py.cli.main([...])` in-process and checks: the exit code (1 for a
user error, 2 for an option argparse refuses), exactly one line on stderr, no
"Traceback", and that the line names the option or the file (and field) at fault.
The bad inputs are the ones a hostile test run used (issue 15) plus the neighbours
found while fixing them; config.json field checks are in test_config_errors.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import webllm_py
from webllm_py import cli
from webllm_py.errors import BuildError


def run(argv: list, capsys) -> tuple[int, str]:
    """(exit code, stderr) of the CLI; argparse's SystemExit is an exit code like any other."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, want_code: int, *names: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert code == want_code, err
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


@pytest.fixture(scope="module")
def bundle(tiny_bundles) -> str:
    return str(tiny_bundles("llama", "q4"))


# -- options refused at parse time: (argv after the bundle, option named) ------------------------

LOAD = ["--backend", "reference"]
PARSE_ERRORS = {
    "serve": [(["--port", "70000"], "--port"), (["--port", "-1"], "--port"), (["--port", "80.5"], "--port"),
              (["--queue", "-1"], "--queue"), (["--queue", "x"], "--queue")],
    "generate": [(["--prompt", "a", "--max-tokens", "-5"], "--max-tokens"),
                 (["--prompt", "a", "--max-tokens", "0"], "--max-tokens"),
                 (["--prompt", "a", "--temperature", "nan"], "--temperature"),
                 (["--prompt", "a", "--temperature", "inf"], "--temperature"),
                 (["--prompt", "a", "--temperature", "-1"], "--temperature"),
                 (["--prompt", "a", "--top-p", "0"], "--top-p"),
                 (["--prompt", "a", "--top-p", "1.5"], "--top-p"),
                 (["--prompt", "a", "--top-p", "nan"], "--top-p"),
                 (["--prompt", "a", "--seed", "-1"], "--seed"),
                 (["--prompt", "a", "--seed", str(2**53)], "--seed"),
                 (["--prompt", ""], "--prompt"), (["--prompt", " \n"], "--prompt")],
    "chat": [(["--max-tokens", "-5"], "--max-tokens"), (["--temperature", "nan"], "--temperature")],
    "eval": [(["--text", "/nonexistent/t.txt"], "/nonexistent/t.txt"), (["--text", "{tmp}"], "--text"),
             (["--text", "{binary}"], "{binary}"), (["--text", "{empty}"], "{empty}"),
             (["--text", "{text}", "--max-tokens", "-5"], "--max-tokens"),
             (["--text", "{text}", "--max-tokens", "1"], "--max-tokens")],
    "bench": [(["--prompt-tokens", "0"], "--prompt-tokens"), (["--decode-tokens", "-1"], "--decode-tokens"),
              (["--repeats", "0"], "--repeats"), (["--backends", "native,gpu"], "--backends")],
    "profile": [(["-n", "0"], "-n"), (["-p", "-1"], "-p")],
    "inspect": [],
}
CASES = [(cmd, args, name) for cmd, cases in PARSE_ERRORS.items() for args, name in cases]


@pytest.mark.parametrize("cmd,args,name", CASES, ids=[f"{c}{' '.join(a)}" for c, a, _ in CASES])
def test_bad_option_is_one_line_at_parse_time(cmd, args, name, bundle, tmp_path, capsys):
    files = {"tmp": tmp_path, "binary": tmp_path / "b.txt", "empty": tmp_path / "e.txt", "text": tmp_path / "t.txt"}
    files["binary"].write_bytes(b"\xff\xfe\x00\x81 not UTF-8")
    files["empty"].write_bytes(b"")
    files["text"].write_text("The quick brown fox jumps over the lazy dog. " * 4, encoding="utf-8")
    args = [a.format(**files) for a in args]
    name = name.format(**files)
    load = LOAD if cmd in ("generate", "chat", "eval") else []
    code, err = run([cmd, bundle, *load, *args], capsys)
    line = assert_one_line(code, err, 2, name)
    assert line.startswith(f"webllm-py {cmd}: error: ")


def test_a_missing_required_option_is_one_line(capsys):
    code, err = run(["build", "model"], capsys)
    assert_one_line(code, err, 2, "-o/--out")


# -- build: ranges of the build options, on the command line and in the Python API ---------------

@pytest.mark.parametrize("args,name", [
    (["--context-window", "0"], "--context-window"), (["--context-window", "-1"], "--context-window"),
    (["--context-window", "2k"], "--context-window"),
    (["--shard-mib", "0"], "--shard-mib"), (["--shard-mib", "-1"], "--shard-mib"), (["--shard-mib", "513"], "--shard-mib"),
    (["--prefill-chunk", "0"], "--prefill-chunk"), (["--prefill-chunk", "-3"], "--prefill-chunk"),
])
def test_build_option_out_of_range_is_refused(args, name, tiny_models, tmp_path, capsys):
    code, err = run(["build", tiny_models["llama"], "-o", tmp_path / "b", *args], capsys)
    assert_one_line(code, err, 2, name)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("ctx,why", [
    (1099511627776, "max_position_embeddings"),  # the hostile run's 1 TiB positions
    (257, "max_position_embeddings"),  # one past the tiny model's 256
])
def test_build_context_window_beyond_the_model_is_refused(ctx, why, tiny_models, tmp_path, capsys):
    code, err = run(["build", tiny_models["llama"], "-o", tmp_path / "b", "--context-window", ctx], capsys)
    assert_one_line(code, err, 1, "context_window", str(ctx), why)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temp folder


def test_build_context_window_whose_kv_cache_cannot_be_bound_is_refused(tiny_models, tmp_path, capsys):
    # A model that claims 2^40 positions: the window fits the model but one layer's KV cache
    # (2^30 rows x 2 kv heads x 16 dims x 4 bytes = 128 GiB) fits no GPU binding.
    model = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], model)
    cfg = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**cfg, "max_position_embeddings": 2**40}))
    code, err = run(["build", model, "-o", tmp_path / "b", "--context-window", 2**30], capsys)
    assert_one_line(code, err, 1, "context_window", "KV cache", "GiB")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("opts,name", [
    ({"context_window": 0}, "context_window"), ({"context_window": -5}, "context_window"),
    ({"context_window": 1099511627776}, "context_window"), ({"context_window": 2.5}, "context_window"),
    ({"context_window": True}, "context_window"),
    ({"shard_bytes": 0}, "shard_bytes"), ({"shard_bytes": -1}, "shard_bytes"), ({"shard_bytes": 1 << 40}, "shard_bytes"),
    ({"shard_bytes": 255}, "shard_bytes"), ({"prefill_chunk": 0}, "prefill_chunk"),
])
def test_python_build_refuses_out_of_range_options(opts, name, tiny_models, tmp_path):
    with pytest.raises(BuildError, match=name):
        webllm_py.build(tiny_models["llama"], tmp_path / "b", quantization="f32", progress=False, **opts)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shard_bytes", [0, -1, 1 << 40])
def test_python_build_of_an_embedding_model_refuses_bad_shard_sizes(shard_bytes, tiny_encoders, tmp_path):
    # the encoder writer takes shard_bytes too, and checks it by the same rule
    with pytest.raises(BuildError, match="shard_bytes"):
        webllm_py.build(tiny_encoders["bert"], tmp_path / "b", progress=False, shard_bytes=shard_bytes)
    assert list(tmp_path.iterdir()) == []


def test_build_context_window_default_and_smallest(tiny_models, tmp_path, capsys):
    # None: min(max_position_embeddings, 2048) = 256 for the tiny model; 1 is the smallest window.
    for ctx, want in ((None, 256), (1, 1)):
        out = tmp_path / f"b{ctx}"
        opts = [] if ctx is None else ["--context-window", ctx]
        code, err = run(["build", tiny_models["llama"], "-o", out, "-q", "f32", *opts], capsys)
        assert code == 0, err
        assert json.loads((out / "manifest.json").read_text())["context_window"] == want


@pytest.mark.parametrize("cmd", ["build", "publish"])
def test_q4a_is_a_quantization_choice(cmd):
    # Every format the Python API accepts is a -q choice (q4a was missing).
    from webllm_py.quant import FORMATS

    parser = cli.build_parser()
    for fmt in FORMATS:
        assert parser.parse_args([cmd, "m", "-o", "o", "-q", fmt]).quantization == fmt


def test_build_q4a_end_to_end(tiny_models, tmp_path, capsys):
    code, err = run(["build", tiny_models["llama"], "-o", tmp_path / "b", "-q", "q4a"], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["quantization"]["scheme"] == "q4a"
    assert {w["format"] for w in m["weights"].values()} == {"q4a", "f32"}  # linears q4a, norms/tables f32


def test_publish_context_window_zero_is_refused_not_dropped(tiny_models, tmp_path, capsys):
    code, err = run(["publish", tiny_models["llama"], "-o", tmp_path / "site", "--context-window", "0"], capsys)
    assert_one_line(code, err, 2, "--context-window")
    assert not (tmp_path / "site").exists()


# -- eval: text that is too short to score ---------------------------------------------------------

def test_eval_text_too_short_names_the_file(bundle, tmp_path, capsys):
    t = tmp_path / "short.txt"
    t.write_text("a", encoding="utf-8")  # one token: nothing to predict
    code, err = run(["eval", bundle, *LOAD, "--text", t], capsys)
    assert_one_line(code, err, 1, str(t), "too short")


# -- requests the engine refuses, and bench counts the window cannot hold ---------------------------

def test_a_prompt_that_tokenizes_to_nothing_is_one_line(bundle, monkeypatch, capsys):
    # Some tokenizers drop every character of some texts; simulated by an encode that returns no ids.
    from webllm_py.runtime.tokenizer import Tokenizer

    monkeypatch.setattr(Tokenizer, "encode", lambda self, text, add_special_tokens=True: [])
    code, err = run(["generate", bundle, *LOAD, "--prompt", "\u200b", "--max-tokens", "2"], capsys)
    line = assert_one_line(code, err, 1, "prompt is empty")
    assert "bug" not in line


def test_bench_decode_tokens_beyond_the_window_is_one_line(bundle, capsys):
    code, err = run(["bench", bundle, "--backends", "reference", "--decode-tokens", "300"], capsys)
    assert_one_line(code, err, 1, "--decode-tokens 300", "context window of 256")


# -- input files that cannot be read ---------------------------------------------------------------

def test_config_json_that_is_a_folder_names_it(tiny_models, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(tiny_models["llama"], model)
    (model / "config.json").unlink()
    (model / "config.json").mkdir()
    code, err = run(["build", model, "-o", tmp_path / "b"], capsys)
    assert_one_line(code, err, 1, str(model / "config.json"))
    assert not (tmp_path / "b").exists()


def test_inspect_of_a_folder_that_is_no_bundle(tmp_path, capsys):
    code, err = run(["inspect", tmp_path], capsys)
    assert_one_line(code, err, 1, str(tmp_path), "manifest.json")


def _drop_error_stats(m: dict) -> None:
    for w in m["weights"].values():
        w.pop("error")


def _drop_config_sizes(m: dict) -> None:
    for key in ("hidden_size", "num_hidden_layers"):
        m["model"]["config"].pop(key)


@pytest.mark.parametrize("edit,shown", [
    (_drop_error_stats, "         -          -        -"),  # max |err|, rms err, rel rms columns
    (_drop_config_sizes, "layers -, hidden -,"),
    (lambda m: m.pop("quantization"), "quantization - (embedding -)"),
], ids=["no error stats", "no config sizes", "no quantization"])
def test_inspect_shows_absent_optional_fields_as_dashes(edit, shown, bundle, tmp_path, capsys):
    # Fields the manifest validator leaves optional were KeyErrors in inspect.
    b = tmp_path / "b"
    shutil.copytree(bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    edit(m)
    (b / "manifest.json").write_text(json.dumps(m))
    code, err = run(["inspect", b, "--json"], capsys)
    assert code == 0 and err == "", err
    code, err = run(["inspect", b], capsys)
    assert code == 0 and err == "", err
    assert shown in cli.format_summary(cli.inspect_summary(b))  # the text the command printed


# -- a read-only or full output disk ---------------------------------------------------------------

def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_build_on_a_full_disk_names_the_output_and_leaves_nothing(tiny_models, tmp_path, monkeypatch, capsys):
    import webllm_py.bundle.shards as shards

    class FullDisk:  # a shard file whose writes fail like a full disk (no file name on the error)
        def __init__(self, f):
            self._f = f

        def write(self, b):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self._f, name)

    monkeypatch.setattr(shards, "open", lambda *a, **k: FullDisk(open(*a, **k)), raising=False)
    out = tmp_path / "out" / "b"
    (tmp_path / "out").mkdir()
    code, err = run(["build", tiny_models["llama"], "-o", out], capsys)
    assert_one_line(code, err, 1, str(out), "No space left on device")
    assert _leftovers(tmp_path / "out") == []  # no bundle, no temporary folder


def test_build_on_a_read_only_folder_names_it(tiny_models, tmp_path, monkeypatch, capsys):
    import tempfile

    def read_only(*a, dir=None, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), dir)

    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    code, err = run(["build", tiny_models["llama"], "-o", tmp_path / "b"], capsys)
    assert_one_line(code, err, 1, str(tmp_path), "Read-only file system")
    assert _leftovers(tmp_path) == []


def test_build_keeps_the_old_bundle_when_the_disk_fills(tiny_models, tmp_path, monkeypatch, capsys):
    import webllm_py.bundle.shards as shards

    out = webllm_py.build(tiny_models["llama"], tmp_path / "b", quantization="f32", progress=False)
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(a[0]))

    monkeypatch.setattr(shards, "open", full, raising=False)
    code, err = run(["build", tiny_models["llama"], "-o", out, "-q", "q8"], capsys)
    assert_one_line(code, err, 1, "No space left on device")
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert _leftovers(tmp_path) == ["b"]


def test_publish_on_a_full_disk_names_the_output_and_leaves_nothing(bundle, tmp_path, monkeypatch, capsys):
    import webllm_py.publish as publish

    def full(*a, **k):  # the bundle copy: opening for writing fails like a full disk, with no file name
        if "w" in (a[1] if len(a) > 1 else k.get("mode", "r")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(*a, **k)

    monkeypatch.setattr(publish, "open", full, raising=False)
    out = tmp_path / "site"
    code, err = run(["publish", bundle, "-o", out], capsys)
    assert_one_line(code, err, 1, str(out), "No space left on device")
    assert _leftovers(tmp_path) == []


# -- the safety net --------------------------------------------------------------------------------

def test_an_unexpected_exception_is_one_line_saying_it_is_a_bug(monkeypatch, tmp_path, capsys):
    def boom(args):
        raise ZeroDivisionError("division by zero\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "inspect", (cli.COMMANDS["inspect"][0], boom, "x"))
    code, err = run(["inspect", tmp_path], capsys)
    assert_one_line(code, err, 1, "ZeroDivisionError", "this is a bug, please report it")


def test_debug_variable_shows_the_traceback(monkeypatch, tmp_path):
    def boom(args):
        raise ZeroDivisionError("x")

    monkeypatch.setitem(cli.COMMANDS, "inspect", (cli.COMMANDS["inspect"][0], boom, "x"))
    monkeypatch.setenv("WEBLLM_PY_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["inspect", str(tmp_path)])
