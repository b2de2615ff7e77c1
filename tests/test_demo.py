"""The demo chat page (web/demo/) and `webllm-py publish`.

Publish: a static site from a tiny bundle with only relative URLs, a bundle
copied exactly (and verified), atomic failures (missing web/dist, a broken
bundle, a foreign output folder) and replacing an earlier site. The browser
tests serve a published site with Python's plain http.server, as any static
host would, and chat with it in headless Chromium on SwiftShader's WebGPU; a
screenshot lands in test-artifacts/demo.png.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import re
import shutil
import threading
from pathlib import Path
from typing import Iterator

import pytest

from webllm_py.cli import main as cli_main
from webllm_py.errors import BuildError, BundleError, IntegrityError
from webllm_py.publish import DEMO_FILES, SITE_MARKER, publish, web_assets_dir

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan", "--use-vulkan=swiftshader",
                 "--use-webgpu-adapter=swiftshader", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# Without the SwiftShader flags headless Chromium has navigator.gpu but no adapter.
CHROMIUM_ARGS_NO_WEBGPU = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync"]

# A root-absolute URL in markup or code: a quote (or url( / =) right before "/<path char>".
# "//" (protocol-relative) counts too; a lone "/" (e.g. split("/")) does not.
ABSOLUTE_URL = re.compile(r"""(?:["'`]|url\(\s*)/[\w.~/-]""")
HAS_DIST = (REPO / "web" / "dist" / "index.js").is_file()
needs_dist = pytest.mark.skipif(not HAS_DIST, reason="web/dist is not built: run `cd web && npm run build`")


def fake_web(tmp: Path, with_dist: bool = True) -> Path:
    """A web/ folder with the real demo page and a stand-in package (tests that need no real build)."""
    web = tmp / "web"
    shutil.copytree(REPO / "web" / "demo", web / "demo")
    if with_dist:
        (web / "dist").mkdir()
        (web / "dist" / "index.js").write_text("export const CreateEngine = null;\n")
        (web / "dist" / "worker.js").write_text("// worker\n")
    return web


def leftovers(parent: Path, name: str) -> list[str]:
    """Temporary folders of a publish into parent/name that were not cleaned up."""
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


# ---- the page itself ---------------------------------------------------------------------------


def test_demo_page_has_stable_hooks_and_relative_urls():
    demo = REPO / "web" / "demo"
    html = (demo / "index.html").read_text(encoding="utf-8")
    for hook in ["prompt", "send", "status", "progress", "stop", "new-chat", "error"]:
        assert f'data-testid="{hook}"' in html, hook
    assert 'dataset.testid = "answer"' in (demo / "app.js").read_text(encoding="utf-8")
    for name in DEMO_FILES:
        text = (demo / name).read_text(encoding="utf-8")
        assert not ABSOLUTE_URL.findall(text), (name, ABSOLUTE_URL.findall(text))
        assert "http://" not in text.replace("http://localhost", "").replace("http://127.0.0.1", ""), name
        assert "https://cdn" not in text and "unpkg" not in text, name  # no CDN


def test_web_assets_dir_is_the_repo_web_folder_in_a_dev_install():
    assert web_assets_dir() == REPO / "web"


# ---- publish ---------------------------------------------------------------------------------


def test_publish_bundle_makes_a_relative_static_site(tiny_bundles, tmp_path):
    bundle = tiny_bundles("llama", "q4")
    web = fake_web(tmp_path)
    out = publish(bundle, tmp_path / "site", web_dir=web)
    assert out == tmp_path / "site"
    for name in [*DEMO_FILES, "models.json", SITE_MARKER, "webllm-py/index.js", "webllm-py/worker.js"]:
        assert (out / name).is_file(), name
    # The bundle is copied exactly: manifest.json plus the files it lists, byte for byte.
    manifest = json.loads((bundle / "manifest.json").read_text())
    listed = sorted(["manifest.json"] + [f["path"] for f in manifest["files"]])
    copied = sorted(p.relative_to(out / "model").as_posix() for p in (out / "model").rglob("*") if p.is_file())
    assert copied == listed
    for rel in listed:
        assert (out / "model" / rel).read_bytes() == (bundle / rel).read_bytes(), rel
    # The page reads the static model index, whose URLs are relative.
    html = (out / "index.html").read_text()
    assert '<meta name="webllm-py-models" content="models.json">' in html
    assert json.loads((out / "models.json").read_text()) == {"object": "list", "data": [
        {"id": manifest["model"]["id"], "url": "model/", "manifest": "model/manifest.json"}]}
    for name in ["index.html", "app.js", "style.css"]:
        text = (out / name).read_text()
        assert not ABSOLUTE_URL.findall(text), (name, ABSOLUTE_URL.findall(text))
    assert './webllm-py/index.js' in (out / "app.js").read_text()
    assert leftovers(tmp_path, "site") == []


@needs_dist
def test_publish_copies_the_real_package(tiny_bundles, tmp_path):
    out = publish(tiny_bundles("llama", "q4"), tmp_path / "site")
    dist = REPO / "web" / "dist"
    for f in dist.rglob("*"):
        if f.is_file():
            assert (out / "webllm-py" / f.relative_to(dist)).read_bytes() == f.read_bytes()
    assert "CreateEngine" in (out / "webllm-py" / "index.js").read_text()


def test_publish_without_dist_fails_cleanly(tiny_bundles, tmp_path, capsys):
    web = fake_web(tmp_path, with_dist=False)
    with pytest.raises(BuildError, match=r"cd web && npm run build"):
        publish(tiny_bundles("llama", "q4"), tmp_path / "site", web_dir=web)
    assert not (tmp_path / "site").exists()
    assert leftovers(tmp_path, "site") == []


def test_cli_publish_errors_are_one_line(tiny_bundles, tmp_path, capsys, monkeypatch):
    import webllm_py.publish as pub

    monkeypatch.setattr(pub, "web_assets_dir", lambda: fake_web(tmp_path, with_dist=False))
    rc = cli_main(["publish", str(tiny_bundles("llama", "q4")), "-o", str(tmp_path / "site")])
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: ") and err.count("\n") == 1 and "npm run build" in err
    assert not (tmp_path / "site").exists()


def test_cli_publish_writes_a_site(tiny_bundles, tmp_path, capsys, monkeypatch):
    import webllm_py.publish as pub

    web = fake_web(tmp_path)
    monkeypatch.setattr(pub, "web_assets_dir", lambda: web)
    assert cli_main(["publish", str(tiny_bundles("llama", "q4")), "-o", str(tmp_path / "site")]) == 0
    assert "http.server" in capsys.readouterr().out
    assert (tmp_path / "site" / "model" / "manifest.json").is_file()


def test_publish_refuses_a_foreign_folder_and_replaces_its_own_site(tiny_bundles, tmp_path):
    web = fake_web(tmp_path)
    bundle = tiny_bundles("llama", "q4")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(BuildError, match="not a site made by webllm-py publish"):
        publish(bundle, foreign, web_dir=web)
    assert (foreign / "precious.txt").read_text() == "keep me"
    assert leftovers(tmp_path, "mine") == []

    site = publish(bundle, tmp_path / "site", web_dir=web)
    (site / "stale.txt").write_text("from the old site")
    publish(bundle, site, web_dir=web)  # a site made by publish is replaced as a whole
    assert not (site / "stale.txt").exists()
    assert (site / "model" / "manifest.json").is_file()
    assert leftovers(tmp_path, "site") == []


def test_publish_rejects_a_corrupted_bundle_and_leaves_the_old_site(tiny_bundles, tmp_path):
    web = fake_web(tmp_path)
    good = tiny_bundles("llama", "q4")
    site = publish(good, tmp_path / "site", web_dir=web)
    before = (site / "models.json").read_text()

    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    shard = next((bad / "params").iterdir())
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        publish(bad, site, web_dir=web)
    assert (site / "models.json").read_text() == before  # untouched
    assert leftovers(tmp_path, "site") == []

    with pytest.raises(BuildError, match="no such file"):
        publish(tmp_path / "nope", tmp_path / "site2", web_dir=web)
    (tmp_path / "nomanifest").mkdir()
    (tmp_path / "nomanifest" / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError):
        publish(tmp_path / "nomanifest", tmp_path / "site2", web_dir=web)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BuildError):  # neither a bundle nor an HF folder: the build explains
        publish(empty, tmp_path / "site2", web_dir=web)
    assert not (tmp_path / "site2").exists() and leftovers(tmp_path, "site2") == []


def test_publish_builds_an_hf_folder_first(tiny_models, tmp_path):
    web = fake_web(tmp_path)
    site = publish(tiny_models["llama"], tmp_path / "site", web_dir=web, quantization="q8", progress=False,
                   prefill_chunk=16)
    manifest = json.loads((site / "model" / "manifest.json").read_text())
    assert manifest["quantization"]["scheme"] == "q8"
    from webllm_py.bundle import Bundle

    Bundle(site / "model").verify()
    assert leftovers(tmp_path, "site") == [] and leftovers(site, "model") == []


# ---- in the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def static_site(tiny_bundles, tmp_path_factory) -> Iterator[str]:
    """A published site of the tiny llama (q4) behind python's plain http.server; yields its URL.
    One per module: the pages only read it."""
    if not HAS_DIST:
        pytest.skip("web/dist is not built: run `cd web && npm run build`")
    site = publish(tiny_bundles("llama", "q4"), tmp_path_factory.mktemp("demo") / "site")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        # 127.0.0.1 is a secure context: WebGPU is only exposed to those.
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


def _browser():
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    return sync_api


READY_OR_ERROR = ("() => !document.querySelector('[data-testid=send]').disabled"
                  " || !document.querySelector('[data-testid=error]').hidden")
IDLE = "() => !document.querySelector('[data-testid=send]').disabled"


@contextlib.contextmanager
def chromium_page(args: list[str] = CHROMIUM_ARGS, **page_options) -> Iterator:
    """A new page of a headless Chromium launched with `args` (playwright's page_options); the
    browser closes after the block."""
    sync_api = _browser()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser.new_page(**page_options)
        finally:
            browser.close()


def open_demo(page, url: str) -> None:
    """Load the demo site into `page` and wait until it takes a prompt; its error panel stays hidden."""
    page.goto(url)
    page.wait_for_function(READY_OR_ERROR, timeout=240_000)
    assert page.is_hidden("[data-testid=error]"), page.text_content("[data-testid=error]")


@pytest.mark.slow
@pytest.mark.browser
def test_chat_in_the_browser_from_a_static_host(static_site):
    ARTIFACTS.mkdir(exist_ok=True)
    problems: list[str] = []
    with chromium_page(viewport={"width": 1000, "height": 720}) as page:
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("console", lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None)
        open_demo(page, static_site)
        # The download finished and was verified: the bar is full.
        assert page.eval_on_selector("[data-testid=progress]", "e => e.value") == 1
        assert page.get_attribute("[data-testid=progress]", "aria-valuenow") == "100"
        assert "Ready" in page.text_content("[data-testid=status]")

        # Turn 1. Greedy so that the run is reproducible; the tiny model's text is gibberish.
        page.click("summary")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "24")
        page.fill("[data-testid=prompt]", "hello there, little model")
        page.click("[data-testid=send]")
        page.wait_for_function(IDLE, timeout=240_000)
        answers = page.locator("[data-testid=answer]")
        assert answers.count() == 1
        first = answers.nth(0).text_content()
        notes = page.locator(".note").all_text_contents()
        assert first.strip() or notes, "empty answer without a note"
        assert first.strip(), f"the tiny model answered nothing (notes: {notes})"
        assert "tokens/s" in page.text_content("[data-testid=stats]")

        # Turn 2 (multi-turn: history kept on screen and in the request), via the Enter key.
        page.fill("[data-testid=prompt]", "once upon a time")
        page.press("[data-testid=prompt]", "Enter")
        page.wait_for_function(IDLE, timeout=240_000)
        assert answers.count() == 2
        history = page.evaluate("() => window.webllmDemo.messages.map(m => m.role)")
        assert history == ["user", "assistant", "user", "assistant"]
        page.click("summary")  # fold the settings again for the screenshot
        page.screenshot(path=str(ARTIFACTS / "demo.png"))

        # New chat empties the conversation.
        page.click("[data-testid=new-chat]")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=answer]').length === 0")
        assert page.evaluate("() => window.webllmDemo.messages.length") == 0
        assert page.is_disabled("[data-testid=stop]")
        assert page.is_hidden("[data-testid=error]")
    assert not problems, problems


_STOP_ON_FIRST_TEXT = """() => {
  const obs = new MutationObserver(() => {
    const a = document.querySelector('[data-testid=answer]');
    if (a && a.textContent.length > 0) {
      obs.disconnect();
      const stop = document.querySelector('[data-testid=stop]');
      window.stopClicked = !stop.disabled;  // a disabled button would ignore the click
      stop.click();
    }
  });
  obs.observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
}"""


@pytest.mark.slow
@pytest.mark.browser
def test_stop_button_interrupts_generation(static_site):
    with chromium_page() as page:
        open_demo(page, static_site)
        # Many tokens at temperature 1: long enough to be stopped once the first text shows.
        page.click("summary")
        page.fill("#max-tokens", "200")
        page.fill("#temperature", "1")
        page.fill("[data-testid=prompt]", "tell me a long story")
        # The tiny model decodes hundreds of tokens/s: press Stop from inside the page the moment
        # the first text shows (a round trip from Python could come after the last token).
        page.evaluate(_STOP_ON_FIRST_TEXT)
        # Stop's state is read inside the page when the first text shows: from Python it races
        # the tiny model, which can finish (and disable Stop again) before the round trip.
        page.click("[data-testid=send]")
        page.wait_for_function(IDLE, timeout=240_000)
        assert page.evaluate("() => window.stopClicked") is True
        notes = page.locator(".note").all_text_contents()
        stats = page.evaluate("() => window.webllmDemo.engine.runtimeStats()")
        assert notes == ["stopped"], (notes, stats)
        assert 0 < stats["decode_tokens"] < 200, stats
        assert page.locator("[data-testid=answer]").text_content()
        assert page.is_disabled("[data-testid=stop]")


@pytest.mark.slow
@pytest.mark.browser
def test_missing_webgpu_shows_the_error_panel(static_site):
    with chromium_page(CHROMIUM_ARGS_NO_WEBGPU) as page:
        page.goto(static_site)
        page.wait_for_selector("[data-testid=error]", state="visible", timeout=60_000)
        text = page.text_content("[data-testid=error]")
        assert "WebGPU is not available" in text
        assert "--enable-unsafe-webgpu --enable-features=Vulkan" in text
        assert "Chrome or Edge 113" in text and "http://localhost" in text and "https://" in text
        assert page.is_disabled("[data-testid=send]")
        assert page.eval_on_selector("[data-testid=progress]", "e => e.value") == 0
