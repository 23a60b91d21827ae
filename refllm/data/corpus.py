"""Text corpora: the Python standard library (needs no download), or files the user names.

``stdlib``: every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]`` of the running
interpreter, in the sorted order of their relative POSIX paths, skipping folders named
``site-packages``, ``dist-packages`` (what each user installed differs), ``test``, ``tests``,
``idle_test`` (CPython's test suites hold deliberately broken files: bad encodings, bad syntax;
they would also be two thirds of the text) and ``__pycache__``. CPython 3.11 gives 734 files,
12.1 MB.

A user path: a file (any name) or a folder; in a folder, every file whose suffix is in
``suffixes`` (default ``DEFAULT_SUFFIXES``), in any subfolder, in sorted order of relative paths,
skipping hidden files and folders (names starting with "."). Every file must be UTF-8: a file
that is not gives a ValueError naming the file and the byte offset.

Each file is recorded with its relative path, sha256, size in bytes and origin. ``max_bytes``
takes files in order until the cap; the last one is cut at the cap (moved back to the start of
a UTF-8 character) and records ``bytes_used``. Files are concatenated as they are, with no
separator.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import sysconfig
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from refllm._validation import require_int

SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                       "__pycache__"})
DEFAULT_SUFFIXES = (".txt", ".md", ".rst", ".py")


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: where it is, and what it held when listed."""

    path: str  # absolute path
    relpath: str  # POSIX path relative to the corpus root
    sha256: str
    size: int  # bytes of the whole file
    origin: str  # "stdlib" or "path"
    bytes_used: int  # bytes taken (== size unless cut by max_bytes)

    def to_dict(self) -> dict:
        return asdict(self)


def stdlib_root() -> pathlib.Path:
    """The running interpreter's standard library folder."""
    return pathlib.Path(sysconfig.get_paths()["stdlib"])


def _sorted_files(root: pathlib.Path, suffixes: tuple[str, ...], skip: frozenset[str],
                  skip_hidden: bool) -> list[tuple[str, pathlib.Path]]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames
                       if d not in skip and not (skip_hidden and d.startswith("."))]
        for name in filenames:
            if name.endswith(suffixes) and not (skip_hidden and name.startswith(".")):
                path = pathlib.Path(dirpath, name)
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _check_utf8(data: bytes, path: pathlib.Path | str) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text: byte offset {e.start} "
                         f"({data[e.start:e.start + 4]!r}): {e.reason}") from None


def _utf8_prefix(data: bytes, n: int) -> int:
    """The largest cut <= n that does not split a UTF-8 character of valid UTF-8 ``data``."""
    while 0 < n < len(data) and data[n] & 0xC0 == 0x80:  # continuation byte
        n -= 1
    return n


def _read(files: list[tuple[str, pathlib.Path]], origin: str,
          max_bytes: int | None) -> Iterator[tuple[CorpusFile, bytes]]:
    total = 0
    for relpath, path in files:
        if max_bytes is not None and total >= max_bytes:
            return
        data = path.read_bytes()
        _check_utf8(data, path)
        sha = hashlib.sha256(data).hexdigest()
        used = len(data)
        if max_bytes is not None and total + used > max_bytes:
            used = _utf8_prefix(data, max_bytes - total)
        total += used
        yield CorpusFile(str(path), relpath, sha, len(data), origin, used), data[:used]


def stdlib_corpus(max_bytes: int | None = None) -> Iterator[tuple[CorpusFile, bytes]]:
    """The standard library's ``*.py`` files, each with its (UTF-8) bytes, in sorted order."""
    if max_bytes is not None:
        require_int("max_bytes", max_bytes, low=1)
    files = _sorted_files(stdlib_root(), (".py",), SKIP_DIRS, skip_hidden=False)
    if not files:
        raise ValueError(f"no *.py files under the standard library folder {stdlib_root()}")
    return _read(files, "stdlib", max_bytes)


def path_corpus(path: str | os.PathLike, max_bytes: int | None = None,
                suffixes: tuple[str, ...] = DEFAULT_SUFFIXES,
                ) -> Iterator[tuple[CorpusFile, bytes]]:
    """The UTF-8 file ``path``, or the files of the folder ``path``, with their bytes."""
    if max_bytes is not None:
        require_int("max_bytes", max_bytes, low=1)
    root = pathlib.Path(path)
    if root.is_file():
        return _read([(root.name, root)], "path", max_bytes)
    if not root.is_dir():
        raise FileNotFoundError(f"corpus path {str(path)!r} does not exist (a corpus is "
                                f"'stdlib', 'markov:...', or a UTF-8 text file or a folder of "
                                f"them)")
    if isinstance(suffixes, str) or not all(isinstance(s, str) for s in suffixes):
        raise TypeError(f"suffixes must be a tuple of strings like '.txt', got {suffixes!r}")
    files = _sorted_files(root, tuple(suffixes), frozenset(), skip_hidden=True)
    if not files:
        raise ValueError(f"corpus folder {str(path)!r} holds no file ending in "
                         f"{list(suffixes)} (hidden files and folders are skipped)")
    return _read(files, "path", max_bytes)
