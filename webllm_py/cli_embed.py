"""`webllm-py embed BUNDLE TEXT...`: embed texts with an embedding bundle, print OpenAI's response JSON.

Registered in cli.COMMANDS. Errors are the CLI's one-line errors: a language-model
bundle, a bad --dimensions (a ValueError naming the field) or no texts.
"""

from __future__ import annotations

import argparse
import json

from .cli_types import int_in
from .errors import InputError


def embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="embedding bundle folder")
    p.add_argument("text", nargs="+", help="texts to embed (one embedding each)")
    p.add_argument("--backend", choices=["native", "reference"], default="native")
    p.add_argument("--precision", choices=["auto", "f32", "f16", "idot"], default="auto")
    p.add_argument("--dimensions", type=int_in(1), default=None, help="keep the first N dimensions (Matryoshka)")
    p.add_argument("--encoding-format", choices=["float", "base64"], default="float")


def cmd_embed(args: argparse.Namespace) -> int:
    from .runtime.embeddings import Embeddings

    emb = Embeddings.load(args.bundle, backend=args.backend, precision=args.precision)
    try:
        r = emb.create(input=list(args.text), dimensions=args.dimensions, encoding_format=args.encoding_format)
    except ValueError as e:  # one line naming the field (dimensions out of range, an empty text)
        raise InputError(str(e)) from None
    print(json.dumps(r.to_dict(), ensure_ascii=False))
    return 0
