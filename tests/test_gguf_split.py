"""Split GGUF files (llama.cpp's gguf-split naming, NAME-00001-of-00003.gguf): a tiny seeded Qwen2
written once as one GGUF and once as 3 splits by the gguf package's own writer (split_max_tensors:
it writes split.no / split.count / split.tensors.count the way gguf-split does, the model metadata
in the first split only), with tests/test_gguf_archs.py's convert_hf_to_gguf.py layout.

| check                                      | reference                                      | tolerance                 |
|--------------------------------------------|------------------------------------------------|---------------------------|
| the bundles from the splits (first or a    | the bundle from the single file                | identical manifests (sha256 of every shard included, model id "tiny" too) |
|   later split's path, or their folder)     |                                                |                           |
| logits, reference and native              | transformers' GGUF loader on the single file   | 2e-3 x max|logit| (the GGUF bound of test_gguf_archs: same Q8_0 blocks both sides, f32 order only) |
| bad splits                                 | -                                              | one line naming the file and problem; no bundle folder left |
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

import webllm_py
from conftest import make_tiny_model
from gguf_files import finish_gguf
from test_gguf_archs import write_gguf
from webllm_py.errors import BuildError

TOL = 2e-3
PROMPT = [(7 * i + 3) % 290 + 2 for i in range(20)]
SPLITS = 3


def _names(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("*.gguf"))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """(single file, [split 1, 2, 3], the HF folder)."""
    folder = make_tiny_model(tmp_path_factory.mktemp("hf-qwen2"), "qwen2")
    single = write_gguf(folder, tmp_path_factory.mktemp("single") / "tiny.gguf", "qwen2", permuted=False)
    split_dir = tmp_path_factory.mktemp("split")
    write_gguf(folder, split_dir / "tiny.gguf", "qwen2", permuted=False, split_max_tensors=10)  # 26 tensors
    splits = [split_dir / f"tiny-{i:05d}-of-{SPLITS:05d}.gguf" for i in range(1, SPLITS + 1)]
    assert _names(split_dir) == [p.name for p in splits]
    return single, splits, folder


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def test_splits_build_the_single_files_bundle(files, tmp_path):
    from transformers import AutoModelForCausalLM

    single, splits, _ = files
    want = webllm_py.build(single, tmp_path / "single", progress=False, prefill_chunk=16)
    for i, start in enumerate([splits[0], splits[2], splits[0].parent]):  # the first split, another, the folder
        got = webllm_py.build(start, tmp_path / f"split{i}", progress=False, prefill_chunk=16)
        assert _manifest(got) == _manifest(want)  # model id, config, graphs, programs, every shard's sha256
    hf = AutoModelForCausalLM.from_pretrained(str(single.parent), gguf_file=single.name, dtype=torch.float32)
    with torch.no_grad():
        ref = hf(torch.tensor([PROMPT])).logits[0].numpy()
    for backend in ("reference", "native"):
        model = webllm_py.load(got, backend=backend, precision="f32")
        try:
            assert np.abs(model.logits(PROMPT) - ref).max() <= TOL * max(1.0, float(np.abs(ref).max())), backend
        finally:
            getattr(model, "close", lambda: None)()


def _rewrite(src: Path, dst: Path, arch: str = "qwen2", kv: dict | None = None, extra_from: Path | None = None) -> None:
    """Split `src` written again at `dst` with its split keys replaced by `kv` and, with extra_from,
    the first tensor of that file added (the writer adds general.architecture = arch)."""
    r = gguf.GGUFReader(src)
    keys = {k: f.contents() for k, f in r.fields.items() if k.startswith("split.")}
    keys.update(kv or {})
    tensors = list(r.tensors) + ([gguf.GGUFReader(extra_from).tensors[0]] if extra_from else [])
    tmp = dst.with_suffix(".tmp")
    w = gguf.GGUFWriter(str(tmp), arch)
    w.add_uint16("split.no", keys["split.no"])
    w.add_uint16("split.count", keys["split.count"])
    w.add_int32("split.tensors.count", keys["split.tensors.count"])
    for t in tensors:
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    finish_gguf(w)
    del r
    tmp.replace(dst)


def _other_model(tmp: Path) -> list[Path]:
    """The splits of a 3-layer model (38 tensors)."""
    folder = make_tiny_model(tmp / "hf3", "qwen2", num_hidden_layers=3)
    (tmp / "other").mkdir()
    write_gguf(folder, tmp / "other" / "tiny.gguf", "qwen2", permuted=False, split_max_tensors=13)
    return sorted((tmp / "other").glob("*.gguf"))


# case -> (change the copies in `d` (the 3 splits), the file named, the message)
def _missing(d, s, tmp):
    s[2].unlink()
    return s[2], "split 3 of 3 is missing"


def _count(d, s, tmp):
    _rewrite(s[1], s[1], kv={"split.count": 4})
    return s[1], "split.count is 4, but tiny-00001-of-00003.gguf says 3"


def _twice(d, s, tmp):
    _rewrite(s[2], s[2], extra_from=s[1])
    return s[2], f"tensor '{gguf.GGUFReader(s[1]).tensors[0].name}' is in tiny-00002-of-00003.gguf too"


def _order(d, s, tmp):
    s[1].rename(d / "x")
    s[2].rename(s[1])
    (d / "x").rename(s[2])
    return s[1], "split.no is 2, but the file name says split 2 of 3 (split.no 1): the splits are out of order"


def _other(d, s, tmp):
    shutil.copy(_other_model(tmp)[1], s[1])
    return s[1], "split.tensors.count is 38, but tiny-00001-of-00003.gguf says 26: not a split of the same model"


def _other_metadata(d, s, tmp):
    _rewrite(s[1], s[1], arch="llama")
    return s[1], "metadata key 'general.architecture' differs from tiny-00001-of-00003.gguf's"


def _renamed(d, s, tmp):
    s[0].rename(d / "model.gguf")
    return d / "model.gguf", "the name of split 1 of 3 must end in '-00001-of-00003.gguf'"


def _two_models(d, s, tmp):
    shutil.copy(_other_model(tmp)[0], d / "other-00001-of-00003.gguf")
    return d, "the folder holds 2 GGUF models (other-00001-of-00003.gguf, tiny-00001-of-00003.gguf)"


BAD = {"two-models-in-the-folder": _two_models, "missing": _missing, "count": _count, "twice": _twice, "order": _order, "other-model": _other,
       "other-metadata": _other_metadata, "renamed": _renamed}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_splits_are_one_line_errors(case, files, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    splits = [Path(shutil.copy(p, d / p.name)) for p in files[1]]
    named, msg = BAD[case](d, splits, tmp_path)
    start = named if case in ("renamed", "two-models-in-the-folder") else splits[0]
    with pytest.raises(BuildError) as e:
        webllm_py.build(start, tmp_path / "b", progress=False)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{named}: ") and msg in text, text
    assert not (tmp_path / "b").exists()  # nothing half-written
