"""``load_tokens``: a corpus, tokenized and split, as numpy arrays (memory-mapped when cached).

Sources: ``"stdlib"`` and filesystem paths (:mod:`refllm.data.corpus`), tokenized file by file
and concatenated; ``"markov:vocab=V,seed=S,tokens=N[,concentration=A]"``
(:mod:`refllm.data.markov`): train and validation drawn from the same chain with separate sample
seeds (1 and 2), ``N`` tokens in all. Text is split by :mod:`refllm.data.split`.

Arrays are uint8 when vocab_size <= 256, uint16 when <= 65536, else uint32. With ``cache_dir``,
they are written as ``.npy`` files (each atomically; ``meta.json`` last, so a folder with it is
complete) under ``cache_dir/<key>/``, where the key hashes the source (file paths, sizes and sha256,
or chain parameters), the tokenizer and the split; they are opened with
``np.load(mmap_mode="r")``, and a later call with the same key reuses them. Tokenizing streams
file by file to disk, so a corpus need not fit in memory.

``sha256`` hashes a header (tokenizer identity, dtype, split) and the train then validation
tokens, little-endian.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refllm._io import write_atomically, write_bytes_atomically
from refllm._validation import require_int
from refllm.data._stream import split_stream
from refllm.data.corpus import DEFAULT_SUFFIXES, path_corpus, stdlib_corpus
from refllm.data.markov import MarkovSource, token_dtype
from refllm.data.sources import parse_markov, resolve_tokenizer
from refllm.data.split import DEFAULT_CHUNK_TOKENS, as_fraction
from refllm.data.tokenizer import ByteTokenizer

CACHE_VERSION = 1


@dataclass(frozen=True)
class TokenData:
    """Token ids for training and validation, and where they came from."""

    train: np.ndarray  # 1-D ids (may be a np.memmap)
    val: np.ndarray
    vocab_size: int
    sha256: str  # tokens + tokenizer identity + split
    meta: dict[str, Any] = field(default_factory=dict)
    tokenizer: Any = None  # the tokenizer object (None for markov: its ids are the symbols)


def load_tokens(source: str | os.PathLike, *, tokenizer: object = "bytes",
                val_fraction: float = 0.05, max_bytes: int | None = None,
                cache_dir: str | os.PathLike | None = None,
                chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                suffixes: tuple[str, ...] = DEFAULT_SUFFIXES) -> TokenData:
    """Tokenize ``source`` and split it deterministically into train and validation."""
    as_fraction(val_fraction)
    require_int("chunk_tokens", chunk_tokens, low=1)
    if max_bytes is not None:
        require_int("max_bytes", max_bytes, low=1)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be 'stdlib', 'markov:...' or a path, got "
                        f"{type(source).__name__}")
    split = {"val_fraction": val_fraction, "chunk_tokens": chunk_tokens}
    if isinstance(source, str) and source.startswith("markov:"):
        return _load_markov(source, tokenizer, max_bytes, split, cache_dir)
    tok = resolve_tokenizer(tokenizer)
    kind = "stdlib" if source == "stdlib" else "path"

    def corpus():
        if kind == "stdlib":
            return stdlib_corpus(max_bytes)
        return path_corpus(source, max_bytes, suffixes)

    files = [f.to_dict() for f, _ in corpus()]  # first pass: list, check UTF-8, hash
    meta = {"source": str(source), "kind": kind, "files": files, "tokenizer": tok.to_dict(),
            "bytes": sum(f["bytes_used"] for f in files), "split": split}
    if kind == "stdlib":
        meta["python"] = sys.version
    dtype = token_dtype(tok.vocab_size)

    def tokens_by_file():
        for (f, data), want in zip(corpus(), files):
            if f.sha256 != want["sha256"]:
                raise ValueError(f"corpus file {f.path!r} changed while it was being read")
            yield _encode(tok, data, dtype, f.path)

    return _finish(tokens_by_file, dtype, tok.vocab_size, meta, cache_dir, tok)


def _encode(tok, data: bytes, dtype: np.dtype, path: str) -> np.ndarray:
    if isinstance(tok, ByteTokenizer):
        return np.frombuffer(data, dtype=np.uint8)
    text = data.decode("utf-8")
    ids = tok.encode_array(text) if hasattr(tok, "encode_array") else tok.encode(text)
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= tok.vocab_size):
        raise ValueError(f"tokenizer {tok.name!r} gave ids outside [0, {tok.vocab_size}) "
                         f"for {path!r}")
    return ids.astype(dtype, copy=False)


def _load_markov(source, tokenizer, max_bytes, split, cache_dir) -> TokenData:
    if not (isinstance(tokenizer, str) and tokenizer == "bytes"):
        raise ValueError(f"tokenizer: a markov source emits its own symbol ids; leave tokenizer "
                         f"at its default, got {tokenizer!r}")
    if max_bytes is not None:
        raise ValueError(f"max_bytes: a markov source is sized by tokens=..., got {max_bytes!r}")
    p = parse_markov(source)
    src = MarkovSource(p["vocab"], p["seed"], p["concentration"])
    n = require_int("tokens (in source)", p["tokens"], low=1)
    f = as_fraction(split["val_fraction"])
    n_val = n * f.numerator // f.denominator
    meta = {"source": source, "kind": "markov", "markov": src.to_dict(), "split": split,
            "tokenizer": {"kind": "markov-symbols", "name": f"markov{src.vocab_size}",
                          "vocab_size": src.vocab_size}}
    meta["split"] = {**split, "rule": "train: sample(n - n_val, seed=1); val: sample(n_val, "
                     "seed=2), n_val = floor(n * val_fraction)"}
    _check_nonempty(n - n_val, n_val, split["val_fraction"], source)
    parts = (src.sample(n - n_val, seed=1), src.sample(n_val, seed=2))
    return _finish(None, token_dtype(src.vocab_size), src.vocab_size, meta, cache_dir, None,
                   parts=parts)


def _check_nonempty(n_train: int, n_val: int, val_fraction: float, what: str,
                    chunk_tokens: int | None = None) -> None:
    """Refuse a split with no training or no validation tokens, saying what to change:
    ``chunk_tokens`` is the chunk size of a text split (None: a markov source, split by count)."""
    if n_train == 0:
        raise ValueError(f"source {what!r} gives no training tokens (is it empty?)")
    if val_fraction == 0 or n_val > 0:
        return
    n = n_train + n_val
    if chunk_tokens is None:
        raise ValueError(f"source {what!r} is too small for val_fraction={val_fraction}: "
                         f"floor({n} tokens x {val_fraction}) = 0 validation tokens; raise "
                         f"tokens= in the source or val_fraction")
    n_chunks = -(-n // chunk_tokens)
    every = f"{1 / val_fraction:.3g}"
    least = math.ceil(1000 / n_chunks) / 1000  # rounded up: floor(n_chunks * least) >= 1
    fix = (f"a val_fraction of at least {least:g} (one chunk of {n_chunks}), or a "
           f"bigger corpus" if n_chunks > 1 else "a bigger corpus")
    raise ValueError(
        f"source {what!r} is too small for val_fraction={val_fraction}: its {n:,} tokens make "
        f"{n_chunks} chunk(s) of {chunk_tokens} tokens, and validation takes one chunk in "
        f"every {every}, so it would get none; use {fix} (more or larger files in data, or a "
        f"larger max_bytes if it caps the corpus)")


def _digest(header: dict, train: np.ndarray, val: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps(header, sort_keys=True).encode())
    for arr in (train, val):
        for start in range(0, arr.shape[0], 1 << 24):
            h.update(np.ascontiguousarray(arr[start:start + (1 << 24)]).astype(
                arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def _finish(tokens_by_file, dtype, vocab_size, meta, cache_dir, tok, parts=None) -> TokenData:
    key_doc = {"v": CACHE_VERSION, "dtype": dtype.str, **{k: meta[k] for k in sorted(meta)}}
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True, default=str).encode()).hexdigest()
    folder = None if cache_dir is None else pathlib.Path(cache_dir) / key[:32]
    if folder is not None:
        cached = _open_cached(folder, key, vocab_size, tok)
        if cached is not None:
            return cached
    if parts is None:
        parts = split_stream(tokens_by_file(), dtype, meta, folder, _check_nonempty)
    train, val = parts
    header = {"tokenizer": meta["tokenizer"], "dtype": dtype.str, "split": meta["split"]}
    sha = _digest(header, train, val)
    meta = {**meta, "n_train": int(train.shape[0]), "n_val": int(val.shape[0]),
            "cache": None if folder is None else str(folder)}
    if folder is None:
        return TokenData(train, val, vocab_size, sha, meta, tok)
    for name, arr in (("train", train), ("val", val)):
        if not isinstance(arr, np.memmap):
            _save_npy(folder / f"{name}.npy", arr)
    doc = {"key": key, "sha256": sha, "meta": meta}
    write_bytes_atomically(folder / "meta.json", json.dumps(doc, default=str).encode())
    return _open_cached(folder, key, vocab_size, tok)  # type: ignore[return-value]


def _save_npy(path: pathlib.Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        np.save(f, arr)

    write_atomically(path, write)


def _open_cached(folder: pathlib.Path, key: str, vocab_size: int, tok) -> TokenData | None:
    try:
        doc = json.loads((folder / "meta.json").read_text())
        if doc["key"] != key:
            return None
        train = np.load(folder / "train.npy", mmap_mode="r")
        val = np.load(folder / "val.npy", mmap_mode="r")
    except (OSError, ValueError, KeyError):
        return None  # absent or incomplete: rebuild
    return TokenData(train, val, vocab_size, doc["sha256"], doc["meta"], tok)

