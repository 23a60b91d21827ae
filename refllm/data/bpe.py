"""A byte-level BPE tokenizer: encode, decode, train, and save/load as plain JSON.

Encoding (as GPT-2's ``bpe``): split the text with the pre-tokenisation pattern; for each piece,
start from its UTF-8 bytes and repeatedly merge the adjacent pair with the lowest merge rank
(the earliest learned) until no learned pair is left. A merge can only create pairs of a higher
rank, so this equals applying the merges in training order: a piece of the training text encodes
to the tokens that training left it as. Token 256 + k stands for the bytes of merge k's two
tokens, concatenated; decoding concatenates bytes and decodes UTF-8 (``errors="replace"`` by
default, see :mod:`refllm.data.tokenizer`).

File format (JSON, UTF-8, written atomically)::

    {"format": "refllm-bpe", "version": 1, "vocab_size": 258,
     "pattern": "<regex or null>", "merges": [[101, 32], [116, 104]]}

>>> tok = BPETokenizer.train("low lower lowest", vocab_size=258)
>>> tok.merges
[(108, 111), (256, 119)]
>>> tok.encode("lowly")
[257, 108, 121]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from refllm._io import write_bytes_atomically
from refllm._validation import require_choice, require_int
from refllm.data.bpe_train import DEFAULT_PATTERN, TRAINERS, Pair, pretokenize, word_counts
from refllm.data.tokenizer import check_ids, utf8

FORMAT, VERSION = "refllm-bpe", 1
_CACHE_LIMIT = 1 << 18  # pieces remembered by encode (cleared when full)


class BPETokenizer:
    """Byte-level BPE with ``vocab_size = 256 + len(merges)``."""

    def __init__(self, merges: Sequence[Sequence[int]], pattern: str | None = DEFAULT_PATTERN):
        self.merges: list[Pair] = _check_merges(merges, "merges")
        self.pattern = _check_pattern(pattern, "pattern")
        self.ranks = {pair: k for k, pair in enumerate(self.merges)}
        self.vocab = [bytes([i]) for i in range(256)]
        for a, b in self.merges:
            self.vocab.append(self.vocab[a] + self.vocab[b])
        self.vocab_size = len(self.vocab)
        self.sha256 = hashlib.sha256(_canonical(self.definition())).hexdigest()
        self.name = f"bpe{self.vocab_size}-{self.sha256[:12]}"
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, *, method: str = "fast",
              pattern: str | None = DEFAULT_PATTERN) -> BPETokenizer:
        """Learn ``vocab_size - 256`` merges from ``text`` (fewer if no pair is left)."""
        require_int("vocab_size", vocab_size, low=256)
        require_choice("method", method, sorted(TRAINERS))
        pattern = _check_pattern(pattern, "pattern")
        merges = TRAINERS[method](word_counts(text, pattern), vocab_size - 256)
        return cls(merges, pattern)

    # ------------------------------------------------------------------------------ encoding
    def _encode_piece(self, piece: str) -> list[int]:
        ids = list(piece.encode("utf-8"))
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.ranks.get(p, len(self.ranks)))
            if pair not in self.ranks:
                break
            new_id, out, i = 256 + self.ranks[pair], [], 0
            while i < len(ids):
                if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``."""
        utf8(text)
        out: list[int] = []
        for piece in pretokenize(text, self.pattern):
            ids = self._cache.get(piece)
            if ids is None:
                if len(self._cache) >= _CACHE_LIMIT:
                    self._cache.clear()
                ids = self._cache[piece] = self._encode_piece(piece)
            out.extend(ids)
        return out

    def encode_array(self, text: str) -> np.ndarray:
        """The token ids of ``text`` as a uint16 (or uint32) array."""
        return np.asarray(self.encode(text), dtype=np.uint16 if self.vocab_size <= 65536
                          else np.uint32)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The bytes the ids stand for."""
        return b"".join(self.vocab[i] for i in check_ids(ids, self.vocab_size))

    def decode(self, ids: Sequence[int], errors: str = "replace") -> str:
        """The text; invalid UTF-8 is handled by ``errors`` (``"replace"`` by default)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # ------------------------------------------------------------------------------ identity
    def definition(self) -> dict[str, Any]:
        """Everything that defines the tokenizer, as written to its JSON file."""
        return {"format": FORMAT, "version": VERSION, "vocab_size": 256 + len(self.merges),
                "pattern": self.pattern, "merges": [list(p) for p in self.merges]}

    def to_dict(self) -> dict[str, Any]:
        """A short description for records (the merges by their hash)."""
        return {"kind": "bpe", "name": self.name, "vocab_size": self.vocab_size,
                "n_merges": len(self.merges), "pattern": self.pattern, "sha256": self.sha256}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BPETokenizer) and other.sha256 == self.sha256

    def __hash__(self) -> int:
        return hash(self.sha256)

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size}, name={self.name!r})"

    # ------------------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the JSON file atomically (a temporary file beside it, then ``os.replace``)."""
        text = json.dumps(self.definition(), indent=None, ensure_ascii=True) + "\n"
        write_bytes_atomically(path, text.encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Read a file written by :meth:`save`; a ValueError naming the file and the problem."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"BPE tokenizer file {str(path)!r} does not exist")
        raw = open(path, "rb").read()
        try:
            d = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not a BPE tokenizer file: byte {e.start} is not "
                             "UTF-8") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not a BPE tokenizer file: invalid JSON at line {e.lineno} "
                             f"column {e.colno} ({e.msg}); is it truncated or corrupt?") from None
        return cls.from_definition(d, where=str(path))

    @classmethod
    def from_definition(cls, d: object, where: str = "definition") -> BPETokenizer:
        """The tokenizer of a :meth:`definition` dict; ``where`` names it in errors."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(d).__name__}")
        if d.get("format") != FORMAT:
            raise ValueError(f"{where}: format is {d.get('format')!r}, expected {FORMAT!r}")
        if d.get("version") != VERSION:
            raise ValueError(f"{where}: format version {d.get('version')!r} is not supported "
                             f"(this refllm reads version {VERSION})")
        missing = {"vocab_size", "pattern", "merges"} - set(d)
        if missing:
            raise ValueError(f"{where}: missing keys {sorted(missing)}")
        try:
            tok = cls(d["merges"], d["pattern"])
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None
        if d["vocab_size"] != tok.vocab_size:
            raise ValueError(f"{where}: vocab_size is {d['vocab_size']!r} but the merges give "
                             f"{tok.vocab_size}")
        return tok


def _canonical(d: dict[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _check_merges(merges: object, name: str) -> list[Pair]:
    if not isinstance(merges, (list, tuple)):
        raise TypeError(f"{name} must be a list of [a, b] id pairs, got {type(merges).__name__}")
    out: list[Pair] = []
    for k, m in enumerate(merges):
        ok = (isinstance(m, (list, tuple)) and len(m) == 2
              and all(isinstance(x, int) and not isinstance(x, bool) for x in m))
        if not ok or not all(0 <= x < 256 + k for x in m):
            raise ValueError(f"{name}[{k}] = {m!r}: expected a pair of token ids in "
                             f"[0, {256 + k}) (bytes and earlier merges)")
        out.append((m[0], m[1]))
    if len(set(out)) != len(out):
        dup = next(p for p in out if out.count(p) > 1)
        raise ValueError(f"{name} holds the pair {list(dup)} twice")
    return out


def _check_pattern(pattern: object, name: str) -> str | None:
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TypeError(f"{name} must be a regular expression (str) or None, got "
                        f"{type(pattern).__name__}")
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{name} {pattern!r} is not a valid regular expression: {e}") from None
    return pattern
