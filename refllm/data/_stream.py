"""Splitting a stream of token arrays (one per file): in memory, or through files on disk.

On disk the stream is appended to a raw temporary file, which is then split chunk by chunk into
``train.npy`` and ``val.npy`` written through ``np.lib.format.open_memmap`` (each to a temporary
name, then ``os.replace``), so no step holds the whole corpus in memory.
"""

from __future__ import annotations

import os
import pathlib
import tempfile
from collections.abc import Callable, Iterable

import numpy as np

from refllm.data.split import split_into, split_sizes, validation_chunks


def split_stream(arrays: Iterable[np.ndarray], dtype: np.dtype, meta: dict,
                 folder: pathlib.Path | None, check: Callable) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) of the concatenated ``arrays`` (memmaps of files in ``folder`` if given)."""
    split = meta["split"]
    chunk, f = split["chunk_tokens"], split["val_fraction"]
    if folder is None:
        parts = [np.asarray(a, dtype=dtype) for a in arrays]
        tokens = np.concatenate(parts) if parts else np.empty(0, dtype)
        return _split_to(tokens, f, chunk, check, meta, lambda name, n: np.empty(n, dtype))
    folder.mkdir(parents=True, exist_ok=True)
    fd, raw = tempfile.mkstemp(dir=folder, prefix=".tokens.", suffix=".raw.tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for a in arrays:
                out.write(np.ascontiguousarray(a, dtype=dtype).tobytes())
        n = os.path.getsize(raw) // dtype.itemsize
        tokens = np.memmap(raw, dtype=dtype, mode="r") if n else np.empty(0, dtype)
        temps: dict[str, str] = {}

        def make(name: str, size: int) -> np.ndarray:
            fd2, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".npy.tmp")
            os.close(fd2)
            temps[name] = tmp
            if size == 0:
                np.save(tmp, np.empty(0, dtype))
                return np.empty(0, dtype)
            return np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(size,))

        try:
            train, val = _split_to(tokens, f, chunk, check, meta, make)
            for arr in (train, val):
                if isinstance(arr, np.memmap):
                    arr.flush()
            del tokens, train, val
            for name, tmp in temps.items():
                os.replace(tmp, folder / f"{name}.npy")
        finally:
            for tmp in temps.values():
                if os.path.exists(tmp):
                    os.unlink(tmp)
    finally:
        os.unlink(raw)
    return (np.load(folder / "train.npy", mmap_mode="r"),
            np.load(folder / "val.npy", mmap_mode="r"))


def _split_to(tokens: np.ndarray, f: float, chunk: int, check: Callable, meta: dict,
              make: Callable[[str, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    is_val = validation_chunks(tokens.shape[0], f, chunk)
    n_train, n_val = split_sizes(tokens.shape[0], is_val, chunk)
    check(n_train, n_val, f, meta["source"], chunk)
    train, val = make("train", n_train), make("val", n_val)
    split_into(tokens, is_val, chunk, train, val)
    return train, val
