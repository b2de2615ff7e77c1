"""The `webllm-py` verbs end to end on a tiny bundle: generate, chat (stdin), eval, bench, profile.

eval tolerance: native vs reference perplexity within 1e-3 relative (f32 kernels, see test_native).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import webllm_py


def cli(*args: str, stdin: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "webllm_py.cli", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout)


def test_generate_matches_the_engine(tiny_bundles):
    b = tiny_bundles("llama", "q4")
    proc = cli("generate", str(b), "--backend", "reference", "--prompt", "Once upon", "--max-tokens", "8",
               "--temperature", "0")
    assert proc.returncode == 0, proc.stderr
    eng = webllm_py.Engine(str(b), backend="reference")  # Engine accepts a bundle path
    want = eng.completions.create(prompt="Once upon", max_tokens=8, temperature=0).choices[0].text
    assert proc.stdout == "Once upon" + want + "\n"


def test_chat_reads_turns_from_stdin(tiny_bundles):
    proc = cli("chat", str(tiny_bundles("llama", "q4")), "--backend", "reference", "--max-tokens", "4",
               "--temperature", "0", stdin="hello there\n/reset\nonce upon a time\n\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("> ") >= 3  # a prompt per turn, /reset included


def test_eval_native_equals_reference(tiny_bundles, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. Once upon a time there was a model. " * 4)
    res = {}
    for backend in ("reference", "native"):
        proc = cli("eval", str(tiny_bundles("qwen2", "q8")), "--backend", backend, "--precision", "f32",
                   "--text", str(text), "--json")
        if proc.returncode != 0 and "adapter" in proc.stderr:
            pytest.skip(proc.stderr.strip())
        assert proc.returncode == 0, proc.stderr
        res[backend] = json.loads(proc.stdout)
    assert res["native"]["tokens"] == res["reference"]["tokens"] > 50
    assert res["native"]["perplexity"] == pytest.approx(res["reference"]["perplexity"], rel=1e-3)


def test_bench_and_profile_report_json(tiny_bundles):
    b = str(tiny_bundles("llama", "q4"))
    proc = cli("bench", b, "--prompt-tokens", "8", "--decode-tokens", "2", "--repeats", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["results"]
    assert set(r) == {"native", "reference"} and r["native"]["decode_tok_s"] > 0
    assert r["reference"]["decode_vs_reference"] == 1.0
    proc = cli("profile", b, "--precision", "f32", "--json")
    assert proc.returncode == 0, proc.stderr
    prof = json.loads(proc.stdout)
    assert prof["dispatches"] == sum(f["dispatches"] for f in prof["families"].values())
    assert "matmul" in prof["families"] and prof["gpu_total_us"] > 0
