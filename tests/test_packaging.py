"""The Python wheel and the npm package as users get them, away from this repository.

Wheel: built from a copy of the checkout's files (what git would commit, plus the built
web/dist), installed with its dependencies from the package registry into a new venv
(no system site-packages, no repository on its path); its `webllm-py` then builds a
tiny model, publishes a site and serves it from a folder outside the repository, and
the templates, demo page and JS package it uses must be the wheel's.

npm: `npm pack` of web/ installed into a fresh Vite app beside vite (the registry's), a
main.js importing the package by name, `vite build`, served with StaticServer beside a
tiny bundle in headless Chromium; and the same installed package loaded with no bundler
as a plain ES module (static.html). Each page makes a greedy chat completion on the main
thread and in the package's worker; the text must be the native runtime's for the same
bundle and request (f32 programs on both sides, as in test_browser.py, whose tolerance
note applies: same programs on SwiftShader and lavapipe, identical greedy tokens).

Network: the package registries only (PyPI for the wheel's dependencies, npm for vite).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from webllm_py.testing.browser import StaticServer, browser_skip_reason, webgpu_browser  # noqa: F401

from conftest import REPO

pytestmark = pytest.mark.slow

HELPERS = REPO / "tests" / "packaging"
VITE_NODE = (20, 19)  # vite 8's engines field: node ^20.19 || >=22.12
PROMPT = [{"role": "user", "content": "hello"}]  # as tests/packaging/vite_app/complete.js
MAX_TOKENS = 8


def _require_dist() -> Path:
    dist = REPO / "web" / "dist"
    if not ((dist / "index.js").is_file() and (dist / "worker.js").is_file()):
        pytest.fail("web/dist is not built: run `bash scripts/setup` (or `cd web && npm run build`)")
    return dist


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}"
    return proc


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the wheel ------------------------------------------------------------------------------


def _copy_checkout(dst: Path) -> Path:
    """The files git would commit (tracked and new, not ignored), symlinks kept, plus web/dist."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], 60, cwd=REPO).stdout
    for rel in filter(None, listed.split("\0")):
        src, out = REPO / rel, dst / rel
        if not os.path.lexists(src):  # deleted in the working tree, not yet in the index
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            out.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, out)
    shutil.copytree(_require_dist(), dst / "web" / "dist")
    return dst


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _copy_checkout(tmp / "src")
    # No build isolation: the test extras' setuptools builds it, so no download is needed.
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp), str(src)],
         300)
    (whl,) = tmp.glob("webllm_py-*.whl")
    return whl


@pytest.fixture(scope="module")
def user_venv(wheel, tmp_path_factory) -> Path:
    """A new venv holding the wheel and its dependencies from the registry, and nothing else."""
    venv = tmp_path_factory.mktemp("user") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], 120)
    # This venv's pip installs into the new one (pip >= 22.3): no pip inside it to bootstrap.
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", str(wheel)], 900)
    return venv


def _user_env(tmp: Path) -> dict[str, str]:
    """A user's environment: no PYTHONPATH, nothing of this repository."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "XDG_RUNTIME_DIR")}
    return {**keep, "TMPDIR": str(tmp)}


def test_wheel_carries_templates_demo_page_and_js_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = {p.name for p in (REPO / "wgsl_templates").glob("*.wgsl")}
    assert templates and {n.rsplit("/", 1)[1] for n in names if n.startswith("webllm_py/wgsl_templates/")} == templates
    for rel in ["web/demo/index.html", "web/demo/app.js", "web/demo/style.css", "web/dist/index.js",
                "web/dist/worker.js"]:
        assert f"webllm_py/{rel}" in names, rel
    assert not [n for n in names if n.startswith(("tests/", "bench/", "web/src/"))]


def test_installed_wheel_builds_publishes_and_serves_outside_the_repo(wheel, user_venv, tiny_models, tiny_bundles,
                                                                     tmp_path):
    py, cli = user_venv / "bin" / "python", user_venv / "bin" / "webllm-py"
    work = tmp_path / "user"  # the cwd: no repository here or above
    work.mkdir()
    env = _user_env(tmp_path)
    where = json.loads(_run([str(py), "-c", (
        "import json, importlib.util as u, webllm_py, webllm_py.codegen.kernels as k, webllm_py.publish as p;"
        "print(json.dumps({'pkg': webllm_py.__file__, 'templates': str(k._template_dir()),"
        " 'web': str(p.web_assets_dir()), 'torch': u.find_spec('torch') is not None}))")], 120,
        cwd=work, env=env).stdout)
    site_packages = (user_venv / "lib").resolve()
    for key in ("pkg", "templates", "web"):
        assert site_packages in Path(where[key]).resolve().parents, (key, where)
    assert where["torch"] is False, "the venv sees packages that are not the wheel's dependencies"

    # build: the same bundle as this checkout's build of the same model (templates complete)
    _run([str(cli), "build", str(tiny_models["llama"]), "-o", "bundles/tiny", "-q", "q4", "--prefill-chunk", "16"],
         300, cwd=work, env=env)
    ours = json.loads((work / "bundles" / "tiny" / "manifest.json").read_text())
    want = json.loads((tiny_bundles("llama", "q4") / "manifest.json").read_text())
    assert sorted((f["path"], f["sha256"]) for f in ours["files"]) == \
        sorted((f["path"], f["sha256"]) for f in want["files"])

    wheel_js = zipfile.ZipFile(wheel).read("webllm_py/web/dist/index.js")
    assert wheel_js == (REPO / "web" / "dist" / "index.js").read_bytes()

    # publish: a static site with the wheel's page and JS package
    _run([str(cli), "publish", "bundles/tiny", "-o", "site"], 300, cwd=work, env=env)
    assert (work / "site" / "webllm-py" / "index.js").read_bytes() == wheel_js
    assert (work / "site" / "index.html").read_bytes().startswith(b"<!doctype html>")

    # serve (with the REST API on the native runtime) in the background; its first line is the URL
    srv = subprocess.Popen([str(cli), "serve", "bundles", "--port", "0", "--api"], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        line = srv.stdout.readline()
        assert line.startswith("webllm-py serve: http://127.0.0.1:"), line + srv.stderr.read()[-2000:]
        url = line.split(": ", 1)[1].strip()
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert 'data-testid="prompt"' in page and 'content="models/"' in page
        assert urllib.request.urlopen(url + "webllm-py/index.js", timeout=30).read() == wheel_js
        kernel = next(f for f in ours["files"] if f["path"].startswith("kernels/"))
        body = urllib.request.urlopen(f"{url}models/tiny/{kernel['path']}", timeout=30).read()
        assert _sha256(body) == kernel["sha256"]
        req = urllib.request.Request(url + "v1/chat/completions", method="POST", headers={
            "Content-Type": "application/json"}, data=json.dumps(
            {"model": "tiny", "messages": PROMPT, "max_tokens": 4, "temperature": 0}).encode())
        answer = json.loads(urllib.request.urlopen(req, timeout=120).read())
        assert answer["usage"]["completion_tokens"] >= 1, answer
    finally:
        srv.send_signal(signal.SIGINT)
        try:
            rc = srv.wait(timeout=30)
        except subprocess.TimeoutExpired:
            srv.kill()
            raise
    assert rc == 0, srv.stderr.read()[-2000:]


# ---- the npm package ------------------------------------------------------------------------


def _node_version() -> tuple[int, ...] | None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    out = _run(["node", "--version"], 30).stdout.strip().lstrip("v")
    return tuple(int(x) for x in out.split(".")[:2])


@pytest.fixture(scope="module")
def npm_app(tmp_path_factory) -> Path:
    """A fresh Vite app with the packed package installed and built (dist/), and static.html."""
    node = _node_version()
    if node is None:
        pytest.skip("node/npm are not installed (bash scripts/setup installs them)")
    if node < VITE_NODE:
        pytest.skip(f"node {'.'.join(map(str, node))} is older than vite 8 needs ({VITE_NODE[0]}.{VITE_NODE[1]})")
    _require_dist()
    tmp = tmp_path_factory.mktemp("npm")
    packed = json.loads(_run(["npm", "pack", "--json", "--pack-destination", str(tmp)], 120, cwd=REPO / "web").stdout)
    tarball = tmp / packed[0]["filename"]
    app = tmp / "app"
    shutil.copytree(HELPERS / "vite_app", app)
    _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", str(tarball)], 600, cwd=app)
    installed = app / "node_modules" / "webllm-py"
    assert not installed.is_symlink()  # a copy from the tarball, not a link to web/
    assert (installed / "dist" / "index.js").read_bytes() == (REPO / "web" / "dist" / "index.js").read_bytes()
    _run(["npm", "run", "build", "--silent"], 300, cwd=app)
    return app


@pytest.fixture(scope="module")
def bundle_and_text(tiny_bundles) -> tuple[Path, str]:
    """The tiny llama (q4) and the native runtime's answer to the pages' request."""
    import webllm_py
    from webllm_py.runtime.engine import Engine

    bundle = tiny_bundles("llama", "q4")
    engine = Engine(webllm_py.load(bundle, backend="native", precision="f32"))
    r = engine.chat.completions.create(messages=PROMPT, max_tokens=MAX_TOKENS, temperature=0)
    return bundle, r.choices[0].message.content


def _complete_in(browser, server: StaticServer, page_path: str) -> dict:
    page = browser.new_page(server.url(page_path))
    try:
        page.wait_for_function("window.appReady === true", timeout=60_000)
        return page.evaluate("(u) => window.complete(u)", server.url("/b/"))
    except Exception as e:  # playwright.Error: add what the page logged
        raise AssertionError(f"{e}\n--- browser console ---\n{browser.console_tail()}") from None
    finally:
        page.context.close()


@pytest.mark.browser
def test_npm_package_in_a_fresh_vite_app(npm_app, bundle_and_text, webgpu_browser):
    bundle, want = bundle_and_text
    assert (npm_app / "dist" / "index.html").is_file()
    with StaticServer({"/": npm_app / "dist", "/b/": bundle}) as srv:
        got = _complete_in(webgpu_browser, srv, "/")
        served = [r for r in srv.requests if not r.startswith("/b/")]
    assert got == {"main": want, "worker": want}, (got, want)
    assert all(r == "/" or r.startswith("/assets/") or r == "/favicon.ico" for r in served), served


@pytest.mark.browser
def test_npm_package_as_a_plain_es_module_from_a_static_path(npm_app, bundle_and_text, webgpu_browser):
    bundle, want = bundle_and_text
    with StaticServer({"/": npm_app, "/b/": bundle}) as srv:
        got = _complete_in(webgpu_browser, srv, "/static.html")
        served = set(srv.requests)
    assert got == {"main": want, "worker": want}, (got, want)
    assert {"/node_modules/webllm-py/dist/index.js", "/node_modules/webllm-py/dist/worker.js"} <= served


RESOLVE = """
import { createRequire } from "node:module";
const require = createRequire(process.cwd() + "/");
const out = {};
for (const s of JSON.parse(process.argv[1])) {
  try { out[s] = require.resolve(s); } catch (e) { out[s] = e.code; }
}
out.CreateEngine = typeof (await import("webllm-py")).CreateEngine;
console.log(JSON.stringify(out));
"""


def test_npm_package_entry_points_resolve_in_node(npm_app):
    """Every documented specifier resolves in the installed package, package.json included (tools
    such as bundler plugins and version checks read it). Failed before for package.json:
    ERR_PACKAGE_PATH_NOT_EXPORTED, as the exports map did not list it."""
    pkg = npm_app / "node_modules" / "webllm-py"
    want = {"webllm-py": pkg / "dist" / "index.js", "webllm-py/worker": pkg / "dist" / "worker.js",
            "webllm-py/dist/index.js": pkg / "dist" / "index.js", "webllm-py/package.json": pkg / "package.json"}
    got = json.loads(_run(["node", "--input-type=module", "-e", RESOLVE, json.dumps(list(want))], 60,
                          cwd=npm_app).stdout)
    assert got == {**{k: str(v) for k, v in want.items()}, "CreateEngine": "function"}, got
    meta = json.loads((pkg / "package.json").read_text())
    assert (pkg / meta["types"]).is_file() and (pkg / meta["exports"]["."]["types"]).is_file()
