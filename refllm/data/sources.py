"""Naming a corpus: ``"stdlib"``, ``"markov:vocab=8,seed=0,tokens=1000000"``, or a path; and
naming a tokenizer: ``"bytes"``, a tokenizer object, or the path of a saved BPE JSON file."""

from __future__ import annotations

import os
from typing import Any

from refllm.data.bpe import BPETokenizer
from refllm.data.tokenizer import ByteTokenizer, Tokenizer

MARKOV_DEFAULTS: dict[str, Any] = {"vocab": 8, "seed": 0, "tokens": 1_000_000,
                                   "concentration": 0.5}


def parse_markov(source: str) -> dict[str, Any]:
    """The parameters of ``"markov:key=value,..."`` (vocab, seed, tokens: ints; concentration)."""
    params = dict(MARKOV_DEFAULTS)
    body = source[len("markov:"):].strip()
    for item in filter(None, (s.strip() for s in body.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in MARKOV_DEFAULTS:
            raise ValueError(f"source {source!r}: {item!r} is not key=value with key in "
                             f"{sorted(MARKOV_DEFAULTS)}")
        try:
            params[key] = float(value) if key == "concentration" else int(value)
        except ValueError:
            kind = "a number" if key == "concentration" else "an int"
            raise ValueError(f"source {source!r}: {key} must be {kind}, got {value!r}") from None
    return params


def resolve_tokenizer(tokenizer: object) -> Tokenizer:
    """``"bytes"`` -> ByteTokenizer; a path -> BPETokenizer.load; a tokenizer object as is."""
    if isinstance(tokenizer, (str, os.PathLike)):
        if tokenizer == "bytes":
            return ByteTokenizer()
        if not os.path.isfile(tokenizer):
            raise FileNotFoundError(f"tokenizer must be 'bytes', a tokenizer object or the path "
                                    f"of a saved BPE file; {str(tokenizer)!r} does not exist")
        return BPETokenizer.load(tokenizer)
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError("tokenizer must be 'bytes', the path of a saved BPE file, or an object "
                        "with name, vocab_size, encode, decode and to_dict; got "
                        f"{type(tokenizer).__name__}")
    return tokenizer
