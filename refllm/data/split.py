"""The train/validation split: fixed-size chunks, spread evenly, every k-th one to validation.

The token stream is cut into chunks of ``chunk_tokens`` tokens (the last one may be shorter).
With the validation fraction f (rounded to a fraction p/q with q <= 10^6), chunk i (from 0) goes to
validation exactly when

    floor((i + 1) * f) > floor(i * f)

so that among the first m chunks floor(m * f) are for validation, spread evenly through the whole
corpus (f = 0.05: chunks 19, 39, 59, ... - every 20th). No whole file or region of the corpus
ends up in validation, and the split depends only on (n, f, chunk_tokens): it is deterministic.

>>> validation_chunks(n_tokens=10, val_fraction=0.25, chunk_tokens=1).nonzero()[0].tolist()
[3, 7]
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from refllm._validation import require_int, require_real

DEFAULT_CHUNK_TOKENS = 4096
_BLOCK_CHUNKS = 256  # chunks copied at a time (bounded memory for memory-mapped streams)


def as_fraction(val_fraction: float) -> Fraction:
    """``val_fraction`` checked (0 <= f < 1) and as an exact fraction of denominator <= 10^6."""
    f = require_real("val_fraction", val_fraction, low=0.0, high=1.0, high_open=True)
    return Fraction(repr(f)).limit_denominator(10**6)


def validation_chunks(n_tokens: int, val_fraction: float,
                      chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> np.ndarray:
    """A bool per chunk: True for the chunks that go to validation."""
    require_int("n_tokens", n_tokens, low=0)
    chunk_tokens = require_int("chunk_tokens", chunk_tokens, low=1)
    f = as_fraction(val_fraction)
    i = np.arange(-(-n_tokens // chunk_tokens), dtype=np.int64)
    return (i + 1) * f.numerator // f.denominator > i * f.numerator // f.denominator


def split_sizes(n_tokens: int, is_val: np.ndarray, chunk_tokens: int) -> tuple[int, int]:
    """(train tokens, validation tokens) for the chunk choice ``is_val``."""
    sizes = np.full(is_val.shape[0], chunk_tokens, dtype=np.int64)
    if sizes.size:
        sizes[-1] = n_tokens - chunk_tokens * (sizes.size - 1)
    n_val = int(sizes[is_val].sum())
    return n_tokens - n_val, n_val


def split_into(tokens: np.ndarray, is_val: np.ndarray, chunk_tokens: int,
               train: np.ndarray, val: np.ndarray) -> None:
    """Copy the chunks of ``tokens`` into ``train`` and ``val`` (arrays or memmaps, sized by
    :func:`split_sizes`), a block of chunks at a time."""
    t = v = 0
    for start in range(0, is_val.shape[0], _BLOCK_CHUNKS):
        stop = min(start + _BLOCK_CHUNKS, is_val.shape[0])
        block = np.asarray(tokens[start * chunk_tokens: stop * chunk_tokens])
        owner = np.repeat(is_val[start:stop], chunk_tokens)[: block.shape[0]]
        to_val, to_train = block[owner], block[~owner]
        train[t: t + to_train.shape[0]] = to_train
        val[v: v + to_val.shape[0]] = to_val
        t, v = t + to_train.shape[0], v + to_val.shape[0]
    assert t == train.shape[0] and v == val.shape[0], (t, v, train.shape, val.shape)


def split(tokens: np.ndarray, val_fraction: float,
          chunk_tokens: int = DEFAULT_CHUNK_TOKENS) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) of an in-memory token array."""
    is_val = validation_chunks(tokens.shape[0], val_fraction, chunk_tokens)
    n_train, n_val = split_sizes(tokens.shape[0], is_val, chunk_tokens)
    train = np.empty(n_train, dtype=tokens.dtype)
    val = np.empty(n_val, dtype=tokens.dtype)
    split_into(tokens, is_val, chunk_tokens, train, val)
    return train, val
