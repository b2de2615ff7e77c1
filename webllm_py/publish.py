"""`webllm-py publish`: a self-contained static chat site for one model.

Layout of the site (every URL inside is relative, so any static host works,
`python -m http.server -d SITE` included):

    index.html, app.js, style.css   the demo chat page (web/demo/)
    webllm-py/                      the built npm package (web/dist/: index.js, its worker, maps)
    models.json                     model index the page reads: {"object": "list", "data": [{"id", "url": "model/"}]}
    model/                          the bundle: manifest.json and the files it lists
    .webllm-py-site                 marker: this folder may be replaced by a later publish

The input is a bundle folder (copied, every file checked against the manifest's
sha256 on the way) or an HF model folder / .gguf file (built first with
`webllm_py.build`). Like the bundle writer, publishing is atomic: the site is
written to a temporary folder beside the target and renamed into place only
when complete; a failure leaves nothing behind, and an existing folder that is
not a published site is never replaced.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from .atomic import refuse_to_replace, replace_dir, temp_dir_beside
from .errors import BuildError, IntegrityError

#: Marker file of a published site (a folder holding it may be replaced by `publish`).
SITE_MARKER = ".webllm-py-site"
#: The page files copied from web/demo/.
DEMO_FILES = ("index.html", "app.js", "style.css")
# index.html points the page at `webllm-py serve`'s model index; a site has a static one.
_MODELS_META = '<meta name="webllm-py-models" content="models/">'
_SITE_MODELS_META = '<meta name="webllm-py-models" content="models.json">'


def web_assets_dir() -> Path:
    """The folder holding demo/ and dist/.

    An installed wheel carries them as package data in webllm_py/web/ (see the
    pyproject notes); an editable/dev install reads the repository's web/ folder,
    found relative to this package."""
    packaged = Path(__file__).resolve().parent / "web"
    if (packaged / "demo" / "index.html").is_file():
        return packaged.resolve()  # in a checkout this is a symlink to the repository's web/
    return Path(__file__).resolve().parents[1] / "web"


def _check_assets(web: Path) -> tuple[Path, Path]:
    demo, dist = web / "demo", web / "dist"
    if not (dist / "index.js").is_file():
        raise BuildError("the JS package is not built (no dist/index.js): run `cd web && npm run build`", dist)
    for name in DEMO_FILES:
        if not (demo / name).is_file():
            raise BuildError(f"the demo page is incomplete: {name} is missing", demo)
    if _MODELS_META not in (demo / "index.html").read_text(encoding="utf-8"):
        raise BuildError(f"index.html lacks {_MODELS_META}: cannot point the page at the published model", demo)
    return demo, dist


def _is_site(p: Path) -> bool:
    return (p / SITE_MARKER).is_file()


def _copy_verified(src: Path, dst: Path, size: int, sha256: str) -> None:
    """Copy one bundle file, checking size and sha256 in the same pass (a bad bundle must not ship)."""
    if not src.is_file():
        raise IntegrityError("file listed in the manifest is missing", src)
    h = hashlib.sha256()
    n = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        for block in iter(lambda: fi.read(1 << 20), b""):
            h.update(block)
            n += len(block)
            fo.write(block)
    if n != size:
        raise IntegrityError(f"size {n} != manifest's {size}", src)
    if h.hexdigest() != sha256:
        raise IntegrityError("sha256 does not match the manifest (corrupted or replaced file)", src)


def _copy_bundle(bundle_dir: Path, dst: Path) -> dict[str, Any]:
    """Copy manifest.json and exactly the files it lists (nothing stray); returns the manifest."""
    from .bundle import Bundle

    b = Bundle(bundle_dir)  # BundleError for a missing/invalid manifest or an unknown format version
    dst.mkdir(parents=True)
    for f in b.manifest["files"]:
        rel = Path(f["path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise IntegrityError(f"file path {f['path']!r} leaves the bundle folder", bundle_dir / "manifest.json")
        _copy_verified(bundle_dir / rel, dst / rel, int(f["size"]), str(f["sha256"]))
    shutil.copy2(bundle_dir / "manifest.json", dst / "manifest.json")
    return b.manifest


def publish(model: str | Path, out: str | Path, *, quantization: str = "q4", progress: bool = True,
            web_dir: str | Path | None = None, **build_options: Any) -> Path:
    """Write a static chat site for `model` into the folder `out`; return its path.

    model: a bundle folder (copied and verified), or an HF model folder / .gguf file
        (compiled first with `webllm_py.build(model, ..., quantization=quantization, **build_options)`).
    web_dir: the folder holding demo/ and dist/ (default: `web_assets_dir()`).
    Raises BuildError when the JS package is not built or `out` is an existing folder that is
    not a published site; BundleError/IntegrityError for a broken bundle."""
    demo, dist = _check_assets(Path(web_dir) if web_dir is not None else web_assets_dir())
    src = Path(model)
    if not src.exists():
        raise BuildError("no such file or folder", src)
    out = Path(out).absolute()
    refuse_to_replace(out, lambda p: None if _is_site(p) else f"no {SITE_MARKER}", "site made by webllm-py publish")
    if src.is_dir() and out.resolve() == src.resolve():
        raise BuildError("the site cannot be written over its own input", out)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_dir_beside(out)
    try:
        if (src / "manifest.json").is_file():
            manifest = _copy_bundle(src, tmp / "model")
        else:
            from .api import build

            build(src, tmp / "model", quantization=quantization, progress=progress, **build_options)
            manifest = json.loads((tmp / "model" / "manifest.json").read_text(encoding="utf-8"))

        for name in DEMO_FILES:
            shutil.copy2(demo / name, tmp / name)
        page = (tmp / "index.html").read_text(encoding="utf-8")
        (tmp / "index.html").write_text(page.replace(_MODELS_META, _SITE_MODELS_META), encoding="utf-8")
        # symlinks=False: a static host serves files, so links are resolved into copies.
        shutil.copytree(dist, tmp / "webllm-py", symlinks=False)

        model_id = str(manifest.get("model", {}).get("id") or src.stem)
        index = {"object": "list", "data": [{"id": model_id, "url": "model/", "manifest": "model/manifest.json"}]}
        (tmp / "models.json").write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
        (tmp / SITE_MARKER).write_text(json.dumps({"generator": "webllm-py publish", "model": model_id}) + "\n",
                                       encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


__all__ = ["publish", "web_assets_dir", "SITE_MARKER", "DEMO_FILES"]
