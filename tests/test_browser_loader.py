"""The browser loader against hostile input.

In headless Chromium (Cache Storage on the real browser, not the node tests' in-memory fake;
marked slow + browser): a shard changed at rest in Cache Storage (same size, same headers) is
refetched before the model runs, and a server answering with a wrong status leaves Cache
Storage holding only entries whose bytes match the manifest. Fixtures (bundles, server, native
engines) are test_browser.py's; text is compared exactly with the native runtime's on the f32
programs (test_browser.py: greedy tokens must match exactly).

Without a browser: the Python manifest validator on the bad manifests it shares with the JS one
(web/test/fixtures/bad_manifests.json; web/test/manifest.test.js runs the JS side), and the JS
validator (node) on bundles the compiler writes now, so that it refuses none of them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from webllm_py.testing.browser import webgpu_browser  # noqa: F401 (fixture)

from conftest import REPO
from test_browser import CREATE, PROMPT, _eval, _open, bundles, native, server  # noqa: F401 (fixtures)
from webllm_py.bundle.validate import validate_manifest
from webllm_py.errors import BundleError

VECTORS = json.loads((REPO / "web" / "test" / "fixtures" / "bad_manifests.json").read_text())

# Every Cache Storage entry of the scope whose body does not match the manifest: a URL of a file
# the manifest lists with other bytes, or an entry that is neither a listed file nor the manifest.
UNVERIFIED_ENTRIES = """async ([scope, manifestUrl]) => {
  const c = await caches.open(scope);
  const manifest = JSON.parse(await (await fetch(manifestUrl, { cache: "no-store" })).text());
  const base = new URL(".", manifestUrl).href;
  const want = new Map(manifest.files.map((f) => [new URL(f.path, base).href, f]));
  const bad = [];
  for (const req of await c.keys()) {
    if (req.url === manifestUrl) continue;
    const f = want.get(req.url);
    const bytes = await (await c.match(req)).arrayBuffer();
    const hex = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)), (b) => b.toString(16).padStart(2, "0")).join("");
    if (!f || bytes.byteLength !== f.size || hex !== f.sha256) bad.push(req.url);
  }
  return bad;
}"""


def _shard_requests(server) -> list[str]:
    return [p for p in server.requests if p.endswith(".bin")]


@pytest.mark.slow
@pytest.mark.browser
def test_shard_changed_at_rest_in_cache_storage_is_refetched_and_text_matches_native(webgpu_browser, server, bundles, native):
    _, engine = native(bundles["q4"])
    want = engine.completions.create(prompt=PROMPT, max_tokens=8, temperature=0).choices[0].text
    ctx = webgpu_browser.new_context()
    page = _open(webgpu_browser, server, ctx)
    url = server.url("/b/q4/")
    _eval(webgpu_browser, page, CREATE, [url, {"precision": "f32"}])
    manifest = json.loads((bundles["q4"] / "manifest.json").read_text())
    shard = max((f for f in manifest["files"] if f["path"].endswith(".bin")), key=lambda f: f["size"])
    shard_url = url + shard["path"]
    # Every byte of the largest shard flipped in place; size and every header (an older
    # version's write id among them) kept, as bit rot under the entry would leave it.
    _eval(webgpu_browser, page, """async (url) => {
      const c = await caches.open(webllm.DEFAULT_CACHE_SCOPE);
      const old = await c.match(url);
      const bytes = new Uint8Array(await old.arrayBuffer());
      for (let i = 0; i < bytes.length; i++) bytes[i] ^= 0xff;
      await c.put(url, new Response(bytes, { headers: old.headers }));
    }""", shard_url)
    page.reload()
    page.wait_for_function("window.webllmReady === true")
    server.clear_requests()
    _eval(webgpu_browser, page, CREATE, [url, {"precision": "f32"}])
    assert _shard_requests(server) == ["/b/q4/" + shard["path"]], "only the changed shard is fetched again"
    got = _eval(webgpu_browser, page, """async (prompt) =>
      (await engine.completions.create({ prompt, max_tokens: 8, temperature: 0 })).choices[0].text""", PROMPT)
    assert got == want
    assert _eval(webgpu_browser, page, UNVERIFIED_ENTRIES, ["webllm-py/bundles", url + "manifest.json"]) == []
    ctx.close()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("status", [404, 503])
def test_wrong_status_fails_typed_and_leaves_only_verified_entries(webgpu_browser, server, bundles, status):
    manifest = json.loads((bundles["q4"] / "manifest.json").read_text())
    # The last file the manifest lists, so that others are already cached when it fails.
    target = "/b/q4/" + manifest["files"][-1]["path"]
    server.override(target, lambda _path: (status, b"<html>error</html>", "text/html"))
    page = _open(webgpu_browser, server, webgpu_browser.new_context())
    url = server.url("/b/q4/")
    try:
        err = _eval(webgpu_browser, page, """async (url) => {
          try { await webllm.loadBundle(url, { cache: "faults", retries: 1, retryDelayMs: 10 }); return null; }
          catch (e) { return { name: e.name, status: e.status, network: e instanceof webllm.NetworkError }; }
        }""", url)
    finally:
        server.override(target, None)
    assert err == {"name": "NetworkError", "status": status, "network": True}
    assert _eval(webgpu_browser, page, UNVERIFIED_ENTRIES, ["faults", url + "manifest.json"]) == []
    page.context.close()


# -- the manifest validators, Python and JS, on the same cases ------------------------------------

def _edited(base: dict, edits: list[dict[str, Any]]) -> dict:
    m = json.loads(json.dumps(base))
    for e in edits:
        parent = m
        for k in e["path"][:-1]:
            parent = parent[k]
        if e.get("delete"):
            del parent[e["path"][-1]]
        else:
            parent[e["path"][-1]] = json.loads(json.dumps(e["value"]))
    return m


def test_shared_bad_manifests_base_passes_python():
    validate_manifest(json.loads(json.dumps(VECTORS["base"])), Path("b/manifest.json"))


@pytest.mark.parametrize("case", [c for c in VECTORS["cases"] if "python" in c["runtimes"]], ids=lambda c: c["name"])
def test_shared_bad_manifests_python(case):
    """The same cases web/test/manifest.test.js gives the JS validator: one line naming the field."""
    with pytest.raises(BundleError) as e:
        validate_manifest(_edited(VECTORS["base"], case["edits"]), Path("b/manifest.json"))
    msg = str(e.value)
    assert msg.startswith(f"{Path('b/manifest.json')}: {case['field']}: ") and "\n" not in msg, msg


# node runs parseManifest (web/src) over manifest files; prints one line per file: "ok" or the error
JS_VALIDATE = """
import { readFileSync } from "node:fs";
import { parseManifest } from "./src/manifest.js";
for (const p of process.argv.slice(1)) {
  try { parseManifest(JSON.parse(readFileSync(p, "utf8")), p); console.log("ok"); }
  catch (e) { console.log(e.name + ": " + e.message); }
}
"""

# what the compiler writes now, beyond the q4 tiny llama the vectors are made from
BUILD_VARIANTS: dict[str, dict[str, Any]] = {
    "qwen3_q4a_f16_embedding": dict(quantization="q4a", embedding_format="f16"),
    "qwen3_q8_unfused": dict(quantization="q8", fuse=False),
    "qwen3_f16_sliced_weights": dict(quantization="f16", max_binding_bytes=4096, shard_bytes=8192),
}


def _js_validate(paths: list[Path]) -> list[str]:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (the web package's tests need it too)")
    out = subprocess.run([node, "--input-type=module", "-e", JS_VALIDATE, *map(str, paths)], cwd=REPO / "web",
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.splitlines()


def test_bundles_the_compiler_writes_pass_the_js_validator(tiny_models, tiny_bundles, tmp_path):
    import webllm_py

    paths = [tiny_bundles("llama", q) / "manifest.json" for q in ("q4", "q8", "f32")]
    for name, kw in BUILD_VARIANTS.items():
        paths.append(webllm_py.build(tiny_models["qwen3"], tmp_path / name, progress=False, **kw) / "manifest.json")
    assert _js_validate(paths) == ["ok"] * len(paths)

