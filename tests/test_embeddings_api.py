"""OpenAI embeddings: Engine.embeddings.create, POST /v1/embeddings (the openai client), `webllm-py embed`.

The tiny BERT bundle (mean pooling, normalized, max_seq_length 48) on the reference
backend. Values are compared with the encoder's own output for the same token rows:
float JSON round-trips f32 exactly (<= 1e-7 asked of it, for the float -> JSON text
-> float path), base64 is the same bytes. Bad requests: a ValueError (Python) or a 400
(REST) whose message names the field; the server keeps answering afterwards.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import webllm_py
from webllm_py import Engine
from webllm_py.runtime.embeddings import MAX_INPUTS, ModelKindError

TEXTS = ["the quick brown fox", "Semantic search ranks documents", "ünïcödé 文字 🙂"]


@pytest.fixture(scope="module")
def bundle(tiny_encoder_bundles):
    return tiny_encoder_bundles("bert", "f32")


@pytest.fixture(scope="module")
def engine(bundle):
    return Engine(bundle, backend="reference", model_name="tiny-embed")


def expected(bundle, texts):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(bundle / "tokenizer.json"))
    rows = [e.ids for e in tok.encode_batch(texts)]
    return webllm_py.load_embedder(bundle, backend="reference").encode(rows), sum(map(len, rows))


def test_response_shape_and_values(engine, bundle):
    r = engine.embeddings.create(input=TEXTS)
    d = r.to_dict()
    assert d["object"] == "list" and d["model"] == "tiny-embed"
    assert [(e["object"], e["index"]) for e in d["data"]] == [("embedding", i) for i in range(3)]
    want, tokens = expected(bundle, TEXTS)
    assert d["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert np.abs(np.array([e["embedding"] for e in d["data"]], dtype=np.float32) - want).max() <= 1e-7
    one = engine.embeddings.create(input=TEXTS[0]).data[0].embedding  # a single string
    assert np.abs(np.array(one, np.float32) - want[0]).max() <= 1e-7


def test_base64_is_little_endian_float32(engine, bundle):
    r = engine.embeddings.create(input=TEXTS, encoding_format="base64")
    got = np.stack([np.frombuffer(base64.b64decode(e.embedding), dtype="<f4") for e in r.data])
    assert np.array_equal(got, expected(bundle, TEXTS)[0])


def test_dimensions_truncate_and_renormalize(engine, bundle, tiny_encoder_bundles):
    full = expected(bundle, TEXTS)[0]
    r = np.array([e.embedding for e in engine.embeddings.create(input=TEXTS, dimensions=16).data], np.float32)
    want = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)  # the model normalizes: so does the prefix
    assert r.shape == (3, 16) and np.abs(r - want).max() <= 1e-6
    xlmr = Engine(tiny_encoder_bundles("xlm-roberta", "f32"), backend="reference")  # CLS, not normalized: cut only
    a = xlmr.embeddings.create(input=TEXTS).data[0].embedding
    b = xlmr.embeddings.create(input=TEXTS, dimensions=5).data[0].embedding
    assert b == a[:5]


def test_token_inputs(engine, bundle):
    want, _ = expected(bundle, TEXTS[:2])
    from tokenizers import Tokenizer

    rows = [e.ids for e in Tokenizer.from_file(str(bundle / "tokenizer.json")).encode_batch(TEXTS[:2])]
    got = engine.embeddings.create(input=rows).data
    assert np.abs(np.array([e.embedding for e in got], np.float32) - want).max() <= 1e-7
    assert len(engine.embeddings.create(input=rows[0]).data) == 1  # one list of ids is one input


BAD = [
    ({"input": TEXTS, "temperature": 1}, "unknown field temperature"),
    ({}, "input is required"),
    ({"input": ""}, r"input\[0\] is an empty string"),
    ({"input": []}, "input must be a non-empty"),
    ({"input": ["a", 3]}, "input must be one kind"),
    ({"input": [[1, 2], []]}, r"input\[1\] must be a non-empty list of token ids"),
    ({"input": [[1, "x"]]}, r"input\[0\] must be a non-empty list of token ids"),
    ({"input": [True, False]}, "input must be one kind"),
    ({"input": {"text": "a"}}, "input must be a non-empty"),
    ({"input": ["a"] * (MAX_INPUTS + 1)}, f"at most {MAX_INPUTS} per request"),
    ({"input": [[5] * 49]}, "input: row 0 has 49 tokens; the model embeds at most max_seq_length 48"),
    ({"input": [[5, 999]]}, r"input: row 0: token ids \[999\] are outside"),
    ({"input": "a", "dimensions": 0}, "dimensions must be an integer in 1..64"),
    ({"input": "a", "dimensions": 65}, "dimensions must be an integer in 1..64"),
    ({"input": "a", "dimensions": "8"}, "dimensions must be an integer"),
    ({"input": "a", "dimensions": True}, "dimensions must be an integer"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format must be one of float, base64"),
    ({"input": "a", "user": 7}, "user must be a string"),
]


@pytest.mark.parametrize("params,msg", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_requests_name_the_field(engine, params, msg):
    with pytest.raises(ValueError, match=msg) as e:
        engine.embeddings.create_from_dict(params)
    assert "\n" not in str(e.value)


def test_python_create_rejects_unknown_keywords(engine):
    with pytest.raises(TypeError, match="unexpected keyword argument 'temperature'"):
        engine.embeddings.create(input="a", temperature=1)


def test_model_kinds_are_clear_errors(engine, tiny_bundles):
    with pytest.raises(ModelKindError, match="'tiny-embed' is an embedding model: it cannot chat"):
        engine.chat.completions.create(messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(ModelKindError, match="is an embedding model"):
        engine.completions.create(prompt="hi")
    chat = Engine(tiny_bundles("llama", "f32"), backend="reference", model_name="tiny-chat")
    with pytest.raises(ModelKindError, match="'tiny-chat' is a language model, not an embedding model"):
        chat.embeddings.create(input="hi")


# ---- REST, with the openai client --------------------------------------------------------------

@pytest.fixture(scope="module")
def api(bundle, tiny_bundles, engine):
    import openai

    from webllm_py.serve import make_app, start_in_thread

    chat_bundle = tiny_bundles("llama", "f32")
    chat = Engine(chat_bundle, backend="reference", model_name="tiny-chat")
    app = make_app({"tiny-embed": bundle, "tiny-chat": chat_bundle},
                   api_models={"tiny-embed": engine, "tiny-chat": chat}, queue_size=4)
    with start_in_thread(app) as srv:
        client = openai.OpenAI(base_url=f"{srv.url}v1", api_key="x", max_retries=0, timeout=60)
        yield SimpleNamespace(port=srv.port, client=client)


def test_openai_client_embeddings(api, bundle):
    want, tokens = expected(bundle, TEXTS)
    r = api.client.embeddings.create(model="tiny-embed", input=TEXTS)  # the client asks for base64 and decodes it
    assert r.model == "tiny-embed" and r.usage.prompt_tokens == tokens
    assert np.array_equal(np.array([e.embedding for e in r.data], np.float32), want)
    r = api.client.embeddings.create(model="tiny-embed", input=TEXTS, encoding_format="float", dimensions=8)
    assert len(r.data[0].embedding) == 8 and abs(np.linalg.norm(r.data[0].embedding) - 1) <= 1e-6


def test_rest_errors_are_400_naming_the_field(api):
    import openai

    from serve_fakes import post_json

    status, _, body = post_json(api.port, "/v1/embeddings", {"model": "tiny-embed", "input": "a", "foo": 1})
    assert status == 400 and "unknown field foo" in body["error"]["message"]
    status, _, body = post_json(api.port, "/v1/embeddings", {"model": "tiny-embed", "input": "a", "dimensions": 0})
    assert status == 400 and body["error"]["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError, match="is a language model, not an embedding model"):
        api.client.embeddings.create(model="tiny-chat", input="hi")
    with pytest.raises(openai.BadRequestError, match=r"is an embedding model: it cannot chat.*\(POST /v1/embeddings\)"):
        api.client.chat.completions.create(model="tiny-embed", messages=[{"role": "user", "content": "hi"}])
    status, _, body = post_json(api.port, "/v1/embeddings", {"model": "nope", "input": "a"})
    assert status == 400 and body["error"]["code"] == "model_not_found"
    assert len(api.client.embeddings.create(model="tiny-embed", input="still up").data) == 1


def test_rest_errors_are_400_with_the_queue_full(api, monkeypatch):
    """The fields and the model's kind are checked before a request takes a queue slot: with every
    submit() answering queue_full, the requests above are still 400s, and a valid one is the 503."""
    from serve_fakes import post_json

    from webllm_py.serve.errors import APIError
    from webllm_py.serve.worker import ModelWorker

    def full(self, fn, stream):
        raise APIError(503, "busy", "server_error", code="queue_full", headers={"Retry-After": "1"})

    monkeypatch.setattr(ModelWorker, "submit", full)
    bad = [("/v1/embeddings", {"model": "tiny-embed", "input": "a", "foo": 1}, None),
           ("/v1/embeddings", {"model": "tiny-embed", "input": "a", "dimensions": 0}, "dimensions"),
           ("/v1/embeddings", {"model": "tiny-embed", "input": []}, "input"),
           ("/v1/embeddings", {"model": "tiny-chat", "input": "hi"}, "model"),
           ("/v1/chat/completions", {"model": "tiny-embed", "messages": [{"role": "user", "content": "hi"}]}, "model"),
           ("/v1/completions", {"model": "tiny-embed", "prompt": "hi"}, "model")]
    for path, body, param in bad:
        status, _, err = post_json(api.port, path, body)
        assert status == 400 and err["error"]["param"] == param, (path, body, err)
    status, _, err = post_json(api.port, "/v1/embeddings", {"model": "tiny-embed", "input": "a"})
    assert status == 503 and err["error"]["code"] == "queue_full"


# ---- CLI ------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, "-m", "webllm_py.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_embed(bundle, tiny_bundles):
    p = _cli("embed", str(bundle), *TEXTS[:2], "--backend", "reference", "--dimensions", "4")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [len(e["embedding"]) for e in out["data"]] == [4, 4]
    p = _cli("embed", str(tiny_bundles("llama", "f32")), "hi", "--backend", "reference")
    assert p.returncode == 1 and p.stderr.startswith("error: ") and "is a language model" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_cli_build_defaults_an_embedding_model_to_q8(tiny_encoders, tmp_path):
    p = _cli("build", str(tiny_encoders["bert"]), "-o", str(tmp_path / "b"))
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["quantization"]["scheme"] == "q8"


def test_cli_inspect_an_embedding_bundle(bundle):
    # inspect read context_window / eos ids, which an embedding bundle has not: KeyError before
    p = _cli("inspect", str(bundle))
    assert p.returncode == 0, p.stderr
    assert "embedding model: mean pooling, normalized, max_seq_length 48, 64 dimensions" in p.stdout
    p = _cli("inspect", str(bundle), "--json")
    assert json.loads(p.stdout)["embedding"]["pooling"] == "mean"


def test_cli_serve_an_embedding_bundle(bundle, tmp_path):
    """`webllm-py serve DIR --api` loads an embedding bundle as an embeddings-only engine (load() refuses it)."""
    import shutil

    from serve_fakes import cli_serve, post_json

    shutil.copytree(bundle, tmp_path / "bundles" / "emb")
    with cli_serve(tmp_path / "bundles") as port:
        status, _, body = post_json(port, "/v1/embeddings", {"model": "emb", "input": ["a", "b"]})
        assert status == 200 and [d["index"] for d in body["data"]] == [0, 1] and len(body["data"][0]["embedding"]) == 64
