"""Per-decode-step fixed cost natively: encode-ahead and the GPU argmax, before and after.

    .venv/bin/python bench/step_overhead.py BUNDLE [--precision f32] [--tokens 48] [--repeats 5]

One model, three ways of running the same greedy decode (runs alternate A B C A B C ..., medians):

  before   every step records its own commands after writing the ids (encode-ahead off) and
           reads back the whole logits row, argmax on the CPU (what native.py did before)
  ahead    the next step's commands recorded while the GPU runs this one; full row read back
  argmax   encode-ahead plus forward_argmax: 4 bytes read back, argmax on the GPU

and the CPU time between the token being known and the step's submit that goes into getting its
command buffer (recorded then, or taken from the one recorded ahead): the part of the per-token
fixed cost encode-ahead moves under the GPU's time. Also the decode program's dispatch count.
All three give the same tokens (checked). On an emulator (lavapipe) the GPU is the CPU, so the
step times mix in the kernels' own cost; the encode time is CPU work and reads as it would on a GPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--precision", default="f32")
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
    import webllm_py

    m = webllm_py.load(a.bundle, backend="native", precision=a.precision)
    prompt = [1 + (7 * i) % 200 for i in range(8)]
    record_ahead, take = m._ahead.prepare, m._ahead.take
    took: list[float] = []

    def timed_take(key: tuple) -> object:
        t = time.perf_counter()
        buf = take(key)
        took.append(time.perf_counter() - t)
        return buf

    m._ahead.take = timed_take

    def run(way: str) -> tuple[float, list[int]]:
        m._ahead.prepare = record_ahead if way != "before" else (lambda key: None)
        m.reset()
        tok = int(np.argmax(m.forward(prompt)))
        out = [tok]
        t = time.perf_counter()
        for _ in range(a.tokens):
            tok = m.forward_argmax([tok]) if way == "argmax" else int(np.argmax(m.forward([tok])))
            out.append(tok)
        return (time.perf_counter() - t) / a.tokens, out

    ways = ["before", "ahead", "argmax"]
    times: dict[str, list[float]] = {w: [] for w in ways}
    takes: dict[str, list[float]] = {w: [] for w in ways}
    tokens = {}
    for w in ways:
        run(w)  # warm-up
    for _ in range(a.repeats):
        for w in ways:
            took.clear()
            s, tokens[w] = run(w)
            times[w].append(s)
            takes[w] += took[1:]  # the decode steps (the first is the prompt's prefill)
    assert tokens["before"] == tokens["ahead"] == tokens["argmax"], "the three ways must give the same tokens"

    dispatches = len(m._programs["decode"]["steps"])
    print(f"bundle {a.bundle} precision {m.precision} adapter {m.adapter.info.get('device')} vocab {m.vocab_size}; "
          f"decode program: {dispatches} dispatches")
    base = statistics.median(times["before"])
    for w in ways:
        med = statistics.median(times[w])
        print(f"{w:7s} {med * 1e3:8.3f} ms/token ({(med - base) * 1e3:+.3f} vs before); command buffer on the "
              f"critical path {statistics.median(takes[w]) * 1e6:7.1f} us/token")

if __name__ == "__main__":
    main()
