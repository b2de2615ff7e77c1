"""The `webllm-py` command line: one subcommand per verb, registered in COMMANDS.

Every error is one line on stderr, never a traceback:
- an option value argparse refuses (cli_types.py checks ranges at parse time):
  `webllm-py <cmd>: error: argument --port: ...`, exit code 2;
- errors of webllm-py's own types: `error: <file>: <problem>`, exit code 1;
- an OSError (full or read-only disk, permissions): `error: <path>: <reason>`,
  exit code 1, naming the output folder when the OS names no file;
- anything else is a bug: one line saying so, exit code 1 (WEBLLM_PY_DEBUG=1
  shows the traceback instead).
Progress bars are drawn only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
from typing import Callable

from .build_limits import MAX_SHARD_BYTES
from .bundle_summary import format_summary, inspect_summary  # noqa: F401  (inspect_summary: public here)
from .cli_embed import cmd_embed, embed_args
from .cli_types import comma_list, float_in, int_in, nonempty, port, utf8_text_file
from .errors import InputError, WebLLMError
from .quant import FORMATS
from .runtime.sampler import MAX_SEED

QUANTIZATIONS = list(FORMATS)  # every format the Python API accepts (q4a included)
BACKENDS = ["native", "reference"]
PRECISIONS = ["auto", "f32", "f16", "idot", "gpu", "gpu-sg"]  # passes/program_sets.py


def _progress() -> bool:
    # tqdm on a pipe or a log file is noise around the one error line
    return sys.stderr.isatty()


@contextlib.contextmanager
def _request_errors():
    """The engine refuses a bad request (an empty prompt, ...) with ValueError: a user error here."""
    try:
        yield
    except WebLLMError:
        raise
    except ValueError as e:
        raise InputError(str(e)) from None


def _add_load_args(p: argparse.ArgumentParser, default_backend: str = "native") -> None:
    p.add_argument("bundle", help="bundle folder")
    p.add_argument("--backend", choices=BACKENDS, default=default_backend)
    p.add_argument("--precision", choices=PRECISIONS, default="auto")


def _load(args):
    from .api import load

    return load(args.bundle, backend=args.backend, precision=args.precision, progress=_progress())


# -- build ----------------------------------------------------------------------

def _build_args(p):
    p.add_argument("model", help="HF model folder or .gguf file")
    p.add_argument("-o", "--out", required=True, help="bundle folder to write")
    p.add_argument("--quantization", "-q", default=None, choices=QUANTIZATIONS,
                   help="weight format (default: q4 for a language model, q8 for an embedding model)")
    p.add_argument("--embedding-format", choices=QUANTIZATIONS, help="keep the embedding/LM head in another format")
    p.add_argument("--context-window", type=int_in(1),
                   help="KV cache rows (default: min(max_position_embeddings, 2048)); at most the model's "
                        "max_position_embeddings and a 2 GiB KV cache per layer")
    p.add_argument("--prefill-chunk", type=int_in(1), default=128)
    p.add_argument("--shard-mib", type=int_in(1, MAX_SHARD_BYTES >> 20), default=32,
                   help=f"weight shard size in MiB (1..{MAX_SHARD_BYTES >> 20})")
    p.add_argument("--requantize", action="store_true",
                   help="quantize a GGUF's Q4_0/Q4_1/Q8_0 tensors again instead of keeping their blocks losslessly")
    p.add_argument("--no-fuse", action="store_true", help="keep q/k/v and gate/up as separate matmuls (debugging)")


def cmd_build(args) -> int:
    from .api import build

    out = build(args.model, args.out, quantization=args.quantization, embedding_format=args.embedding_format,
                context_window=args.context_window, prefill_chunk=args.prefill_chunk,
                shard_bytes=args.shard_mib * 1024 * 1024, keep_source_quantization=not args.requantize,
                fuse=not args.no_fuse, progress=_progress())
    print(f"wrote {out}")
    return 0


# -- inspect --------------------------------------------------------------------

def _inspect_args(p):
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--programs", action="store_true",
                   help="per program set and dispatch: kernel family, workgroups, invocations (program_report.py)")
    p.add_argument("--p", type=int_in(0), default=4096, help="cached tokens the --programs figures are taken at")


def cmd_inspect(args) -> int:
    if args.programs:
        from .bundle import Bundle
        from .program_report import format_program_report, program_report

        r = program_report(Bundle(args.bundle).manifest, args.p)
        print(json.dumps(r, indent=1) if args.json else format_program_report(r))
        return 0
    s = inspect_summary(args.bundle)
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
    return 0


# -- eval -----------------------------------------------------------------------

def _eval_args(p):
    _add_load_args(p, default_backend="reference")
    p.add_argument("--text", required=True, type=utf8_text_file, help="UTF-8 text file to score")
    # 2: the first token is context only, so one token scores nothing
    p.add_argument("--max-tokens", type=int_in(2), default=None, help="score at most this many tokens")
    p.add_argument("--json", action="store_true")


def cmd_eval(args) -> int:
    from .eval import perplexity

    model = _load(args)
    try:
        res = perplexity(model, args.text.text, max_tokens=args.max_tokens)
    except ValueError as e:  # eval.py's "too short to score"
        raise InputError(str(e), args.text.path) from None
    print(json.dumps(res) if args.json else f"perplexity {res['perplexity']:.4f} over {res['tokens']} tokens ({res['windows']} windows)")
    return 0


# -- generate / chat ------------------------------------------------------------

def _generate_args(p):
    _add_load_args(p)
    p.add_argument("--prompt", required=True, type=nonempty)
    p.add_argument("--max-tokens", type=int_in(1), default=64)
    p.add_argument("--temperature", type=float_in(0.0), default=None)
    p.add_argument("--top-p", type=float_in(0.0, 1.0, lo_open=True), default=None)
    p.add_argument("--seed", type=int_in(0, MAX_SEED - 1), default=None)
    p.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")


def cmd_generate(args) -> int:
    from .runtime.engine import Engine

    eng = Engine(_load(args))
    kw = dict(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed, stream=True)
    kw = {k: v for k, v in kw.items() if v is not None}
    with _request_errors():
        if args.chat:
            stream = eng.chat.completions.create(messages=[{"role": "user", "content": args.prompt}], **kw)
            for chunk in stream:
                if chunk.choices:
                    print(chunk.choices[0].delta.content or "", end="", flush=True)
        else:
            print(args.prompt, end="", flush=True)
            for chunk in eng.completions.create(prompt=args.prompt, **kw):
                if chunk.choices:
                    print(chunk.choices[0].text or "", end="", flush=True)
    print()
    return 0


def _chat_args(p):
    _add_load_args(p)
    p.add_argument("--system", default=None, help="system message")
    p.add_argument("--max-tokens", type=int_in(1), default=512)
    p.add_argument("--temperature", type=float_in(0.0), default=None)


def cmd_chat(args) -> int:
    from .runtime.engine import Engine

    eng = Engine(_load(args))
    messages = [{"role": "system", "content": args.system}] if args.system else []
    print("chat: empty line or Ctrl-D to quit, /reset for a new conversation", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        if line.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        messages.append({"role": "user", "content": line})
        kw = {"max_tokens": args.max_tokens}
        if args.temperature is not None:
            kw["temperature"] = args.temperature
        reply = []
        with _request_errors():
            for chunk in eng.chat.completions.create(messages=messages, stream=True, **kw):
                if chunk.choices and chunk.choices[0].delta.content:
                    reply.append(chunk.choices[0].delta.content)
                    print(chunk.choices[0].delta.content, end="", flush=True)
        print()
        messages.append({"role": "assistant", "content": "".join(reply)})
    return 0


def _bench_args(p):
    p.add_argument("bundle")
    p.add_argument("--backends", type=comma_list(BACKENDS), default=BACKENDS,
                   help="comma-separated; reference is the numpy baseline")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--prompt-tokens", type=int_in(1), default=128)
    p.add_argument("--decode-tokens", type=int_in(1), default=32)
    p.add_argument("--repeats", type=int_in(1), default=3)
    p.add_argument("--json", action="store_true")


def cmd_bench(args) -> int:
    from .bench import format_table, run_bench
    from .bundle import Bundle

    ctx = int(Bundle(args.bundle).manifest["context_window"])
    if args.decode_tokens > ctx - 2:  # bench.py's prompt is what the window leaves after the decode tokens
        raise InputError(f"--decode-tokens {args.decode_tokens} leaves no room for a prompt in the bundle's "
                         f"context window of {ctx} (at most {ctx - 2})")
    report = run_bench(args.bundle, args.backends, args.precision, args.prompt_tokens,
                       args.decode_tokens, args.repeats)
    print(json.dumps(report, indent=1) if args.json else format_table(report))
    return 0


# -- serve ----------------------------------------------------------------------

def _serve_args(p):
    p.add_argument("bundle", help="a bundle folder, or a folder of bundles (each subfolder with a manifest.json)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port(), default=8000, help="0: any free port")
    p.add_argument("--api", action="store_true", help="also serve the OpenAI-compatible REST API under /v1")
    p.add_argument("--cors", default=None, metavar="ORIGIN", help="allow cross-origin requests: '*' or origin(s), comma-separated")
    p.add_argument("--backend", choices=BACKENDS, default="native", help="runtime of the REST API")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--queue", type=int_in(0), default=8, help="requests waiting per model before 503 (REST API)")
    p.add_argument("--api-key", default=os.environ.get("WEBLLM_API_KEY") or None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1 (default: $WEBLLM_API_KEY, which other "
                        "users cannot read from the process list)")
    p.add_argument("--allowed-hosts", default=None, metavar="NAMES",
                   help="Host names to answer besides localhost/127.0.0.1/[::1] when bound to loopback, "
                        "comma-separated (e.g. a reverse proxy's name); others get 403 (DNS rebinding)")


def cmd_serve(args) -> int:
    from .api import load
    from .runtime.embeddings import is_embedding_bundle_dir
    from .runtime.engine import Engine
    from .serve import discover_bundles, make_app, print_banner, serve
    from .serve.access import exposure_warning

    bundles = discover_bundles(args.bundle)
    engines = None
    if args.api:
        # Loaded up front so that a broken bundle is a one-line error, not a 500 later.
        engines = {mid: Engine(path, backend=args.backend, precision=args.precision, model_name=mid)
                   if is_embedding_bundle_dir(path) else  # an embeddings-only engine (runtime/embeddings.py)
                   Engine(load(path, backend=args.backend, precision=args.precision, progress=_progress()),
                          model_name=mid) for mid, path in bundles.items()}
    app = make_app(bundles, engines, cors=args.cors, queue_size=args.queue, api_key=args.api_key,
                   allowed_hosts=args.allowed_hosts)
    warning = exposure_warning(args.host, args.api, args.api_key)
    if warning:
        print(warning, file=sys.stderr)
    try:
        serve(app, args.host, args.port, on_ready=lambda url: print_banner(url, bundles, engines))
    except OSError as e:  # port in use, unknown host: one line, like the other errors
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


# -- publish --------------------------------------------------------------------

def _publish_args(p):
    p.add_argument("model", help="bundle folder, or an HF model folder / .gguf file (built first)")
    p.add_argument("-o", "--out", required=True, help="site folder to write (replaced only if made by publish)")
    p.add_argument("--quantization", "-q", default="q4", choices=QUANTIZATIONS,
                   help="when building: weight format")
    p.add_argument("--context-window", type=int_in(1), help="when building: context window")


def cmd_publish(args) -> int:
    from .publish import publish

    opts = {"context_window": args.context_window} if args.context_window is not None else {}
    out = publish(args.model, args.out, quantization=args.quantization, progress=_progress(), **opts)
    print(f"wrote {out}\n  serve it from any static host, e.g.: python3 -m http.server -d {out} 8000"
          "  (then open http://localhost:8000/)")
    return 0


def _profile_args(p):
    p.add_argument("bundle")
    p.add_argument("--precision", choices=PRECISIONS, default="auto")
    p.add_argument("--program", choices=["decode", "prefill", "score"], default="decode")
    p.add_argument("-n", type=int_in(1), default=None, help="tokens in the step (default: 1 for decode, prefill_chunk otherwise)")
    p.add_argument("-p", type=int_in(0), default=256, help="tokens already in the KV cache")
    p.add_argument("--json", action="store_true")


def cmd_profile(args) -> int:
    from .api import load
    from .runtime.profile import format_profile, profile_step

    model = load(args.bundle, backend="native", precision=args.precision, profile=True)
    most = 1 if args.program == "decode" else model.prefill_chunk  # rows the program's buffers hold
    n = args.n or most
    if n > most:
        raise InputError(f"-n {n}: the {args.program} program takes at most {most} tokens per step for this bundle")
    p = min(args.p, model.context_window - n)
    r = profile_step(model, args.program, n=n, p=p)
    print(json.dumps(r, indent=1) if args.json else format_profile(r))
    return 0


COMMANDS: dict[str, tuple[Callable, Callable, str]] = {
    "build": (_build_args, cmd_build, "compile an HF model folder or GGUF file into a bundle"),
    "inspect": (_inspect_args, cmd_inspect, "summarize a bundle (config, sizes, quantization error)"),
    "eval": (_eval_args, cmd_eval, "perplexity of a bundle on a text file"),
    "generate": (_generate_args, cmd_generate, "complete a prompt, streamed"),
    "chat": (_chat_args, cmd_chat, "interactive multi-turn chat, streamed"),
    "profile": (_profile_args, cmd_profile, "GPU time per kernel of one step (timestamp queries)"),
    "bench": (_bench_args, cmd_bench, "prefill/decode tokens/s per backend, measured side by side"),
    "serve": (_serve_args, cmd_serve, "serve bundles, the JS package and the demo page over HTTP (--api: OpenAI REST)"),
    "embed": (embed_args, cmd_embed, "embed texts with an embedding bundle (OpenAI embeddings JSON)"),
    "publish": (_publish_args, cmd_publish, "write a static chat site (demo page + JS package + bundle) for any static host"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (the usage itself is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="webllm-py", description="Compile LLMs to WebGPU bundles and run them.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (add_args, _, help_) in COMMANDS.items():
        add_args(sub.add_parser(name, help=help_, description=help_))
    return parser


# Where a command writes: an OSError that names no file (a write to a full disk) names this option's path.
OUTPUT_OPTION = {"build": "out", "publish": "out"}
_OS_HINTS = {errno.ENOSPC: "free some space or write elsewhere", errno.EROFS: "write elsewhere",
             errno.EDQUOT: "free some space or write elsewhere"}


def _one_line(text: str) -> str:
    return " ".join(str(text).split("\n")).strip()


def _os_error_line(e: OSError, args: argparse.Namespace) -> str:
    path = e.filename if e.filename is not None else getattr(args, OUTPUT_OPTION.get(args.command, ""), None)
    reason = e.strerror or str(e)
    hint = _OS_HINTS.get(e.errno)
    return f"{path}: {reason}" + (f" ({hint})" if hint else "") if path is not None else reason


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except WebLLMError as e:
        line = f"error: {e}"
    except OSError as e:
        line = f"error: {_os_error_line(e, args)}"
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # last resort: every expected failure above has its own message
        if os.environ.get("WEBLLM_PY_DEBUG"):
            raise
        line = (f"error: internal error in `{args.command}` ({type(e).__name__}: {e}); this is a bug, please report it "
                "(WEBLLM_PY_DEBUG=1 shows the traceback)")
    print(_one_line(line), file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
