"""Tokenizers: the shared interface, and the byte-level tokenizer (vocabulary of the 256 bytes).

A text is encoded as its UTF-8 bytes, one token per byte (the base alphabet of byte-level BPE,
Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", §2.2): every string,
in any script, has an encoding, and there is no unknown token.

Decoding: a list of ids is a list of bytes, and not every list of bytes is valid UTF-8 (a model may
emit half of a multi-byte character). :meth:`ByteTokenizer.decode` therefore decodes with
``errors="replace"`` by default (each invalid byte sequence becomes U+FFFD); pass
``errors="strict"`` to get a ``UnicodeDecodeError`` instead, or use :meth:`decode_bytes` for the
raw bytes.

>>> tok = ByteTokenizer()
>>> tok.encode("hé")
[104, 195, 169]
>>> tok.decode([104, 195])
'h\ufffd'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Tokenizer(Protocol):
    """What training needs from a tokenizer (ByteTokenizer and BPETokenizer both provide it).

    ``name`` is a short identity (``"bytes"``, ``"bpe512-<hash>"``); ``to_dict()`` describes the
    tokenizer for records (small, JSON-able, and enough to tell two tokenizers apart).
    """

    name: str
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def utf8(text: object, name: str = "text") -> bytes:
    """``text`` encoded as UTF-8; a clear error for a non-string or a lone surrogate."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__} {text!r:.80}")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{name} has a lone surrogate {text[e.start]!r} at index {e.start}, which UTF-8 "
            "cannot encode"
        ) from None


def check_ids(ids: object, vocab_size: int, name: str = "ids") -> list[int]:
    """``ids`` as a list of ints in ``[0, vocab_size)``, or a ValueError/TypeError naming it."""
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise TypeError(f"{name} must be a sequence of ints, got {type(ids).__name__}")
    out = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids)
    if out.size == 0:
        return []
    if out.ndim != 1 or not np.issubdtype(out.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D sequence of ints, got dtype {out.dtype} "
                        f"and shape {out.shape}")
    bad = np.flatnonzero((out < 0) | (out >= vocab_size))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] = {int(out[i])} lies outside the vocabulary "
                         f"[0, {vocab_size})")
    return out.tolist()


class ByteTokenizer:
    """One token per UTF-8 byte: ``vocab_size = 256``, ids are the byte values."""

    name = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        """The UTF-8 bytes of ``text`` as ints."""
        return list(utf8(text))

    def encode_array(self, text: str) -> np.ndarray:
        """The UTF-8 bytes of ``text`` as a uint8 array (no Python loop: ``np.frombuffer``)."""
        return np.frombuffer(utf8(text), dtype=np.uint8)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes the ids stand for."""
        return bytes(check_ids(ids, self.vocab_size))

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """The text; invalid UTF-8 is handled by ``errors`` (``"replace"`` by default)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "bytes", "name": self.name, "vocab_size": self.vocab_size}

    def __repr__(self) -> str:
        return "ByteTokenizer()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash("ByteTokenizer")
