"""The ground floor for files: atomic writes, the JSON-lines appender and its reader.

Every file refllm writes goes through here, so a kill at any instant leaves something readable.

**Whole files** (configs, reports, tokenizers, token caches, checkpoints) are written with
`write_atomically`: a temporary file in the destination's folder, fsync'd, then ``os.replace``'d
over the destination, so a reader (or a crash) sees the old file or the whole new one, never half
of it. The temporary is named ``.<name>.<pid>.<random>.tmp``; `remove_stale_temporaries` deletes
those whose process is gone (a kill between the write and the rename leaves one behind, as large
as the file).

``sync_folder=True`` also fsyncs the folder after the rename. The rename is a change of the
folder, not of the file: without it, a power cut after ``os.replace`` may bring back the previous
directory entry. Only a checkpoint asks for it, because records appended after a checkpoint refer
to its step: if the new checkpoint vanished while the records of the steps after it survived, a
resume would restart from the older checkpoint and write those steps' records twice. Every other
whole file is rebuilt from records (reports, plots) or from its inputs (caches), so losing the
last rename to a power cut costs nothing but a rerun.

**Records** (JSON lines, one object per line) are appended with `append_jsonl`, under an exclusive
``flock`` held for the whole append (safe across processes, and across machines on a file system
whose locks work, as NFS v4's do):

1. *tail repair*: a writer killed mid-line leaves an unfinished last line; before appending, the
   file is cut back to its last newline (said once on stderr), so the new record never glues
   onto the fragment. A last line that lacks only its newline (a file written by hand) is a
   whole JSON object: it is kept and given its newline;
2. *duplicate guard*: with ``unique=KEY``, a record whose KEY value is already in the file is not
   appended (`append_jsonl` returns False): two processes that trained the same run leave one;
3. one ``write`` of the whole line, then fsync; if that fails (a full disk: ``ENOSPC``), the file
   is cut back to its length before the write, so the earlier records stay intact, and
   `RecordWriteError` names the file and the cause.

`read_jsonl` reads the complete lines: an unfinished last line is not a record and is skipped
(a last line without a newline that is a whole JSON object is a record, as the appender keeps it);
any other line that is not a JSON object is an error naming the file and the line, and with
``unique=KEY`` so are two different records with the same KEY value (the error names both lines;
identical copies, as from concatenating a shard's file twice, count once).

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "records.jsonl"
>>> append_jsonl(path, {"kind": "run", "run_id": "a", "loss": 2.5}, unique="run_id")
True
>>> append_jsonl(path, {"kind": "run", "run_id": "a", "loss": 2.4}, unique="run_id")
False
>>> [r["loss"] for r in read_jsonl(path, kind="run", unique="run_id")]
[2.5]
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pathlib
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

__all__ = ["write_atomically", "write_bytes_atomically", "write_text_atomically",
           "write_folder_atomically",
           "remove_stale_temporaries", "fsync_folder", "append_jsonl", "read_jsonl",
           "RecordWriteError"]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- whole files

def _temporary_name(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomically(path: PathLike, write: Callable[[IO[bytes]], object], *,
                     sync_folder: bool = False) -> pathlib.Path:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync it, move it to ``path``.

    ``write`` may also write to the temporary's *name* (``f.name``) instead of ``f`` (safetensors
    writes by file name); whatever lies at that name when it returns is what lands. Returns
    ``path``. ``sync_folder``: fsync the folder after the rename (see the module docstring).
    """
    path = pathlib.Path(path)
    tmp = _temporary_name(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
        with open(tmp, "rb+") as f:  # reopened: ``write`` may have replaced the file by name
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if sync_folder:
        fsync_folder(path.parent)
    return path


def write_folder_atomically(path: PathLike, fill: Callable[[str], object]) -> pathlib.Path:
    """Call ``fill(tmp)`` on a new temporary folder beside ``path``, then rename it to ``path``.

    For a whole folder written by another library (``save_pretrained``): a reader sees no folder
    or the whole one. ``path`` must not exist or be an empty folder (a rename replaces only an
    empty one); on failure the temporary folder is removed.
    """
    path = pathlib.Path(path)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                                        dir=path.parent))
    try:
        fill(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def write_bytes_atomically(path: PathLike, data: bytes, **kw: Any) -> pathlib.Path:
    """Write ``data`` to ``path`` atomically."""
    return write_atomically(path, lambda f: f.write(data), **kw)


def write_text_atomically(path: PathLike, text: str, **kw: Any) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomically(path, text.encode("utf-8"), **kw)


def fsync_folder(folder: PathLike) -> None:
    """fsync a folder (its entries); quietly nothing where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not writing it now (it is cleaning up first)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def remove_stale_temporaries(path: PathLike) -> list[pathlib.Path]:
    """Delete the temporaries of ``path`` left by processes that are gone; return them.

    Both spellings are recognised: ``.<name>.<pid>.<random>.tmp`` (`write_atomically`) and
    ``.<name>.tmp-<pid>`` (checkpoints written by refllm before this module). A temporary of a
    live process on this machine is left alone (it may be writing now).
    """
    path = pathlib.Path(path)
    removed: list[pathlib.Path] = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}."
    for entry in path.parent.iterdir():
        name = entry.name
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix):]
        if rest.startswith("tmp-"):
            pid_text = rest[4:]
        elif rest.endswith(".tmp") and rest.count(".") == 2:
            pid_text = rest.split(".")[0]
        else:
            continue
        if not pid_text.isdigit() or _pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed


# --------------------------------------------------------------------------- JSON lines

class RecordWriteError(OSError):
    """A record could not be appended; the records written before it are intact."""


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _repair_tail(fd: int, path: pathlib.Path) -> int:
    """Cut an unfinished last line off (under the lock); return the file's size after."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    keep, pos, chunk = 0, size, 65536
    while pos > 0:
        start = max(0, pos - chunk)
        block = os.pread(fd, pos - start, start)
        i = block.rfind(b"\n")
        if i >= 0:
            keep = start + i + 1
            break
        pos = start
    if _as_record(os.pread(fd, size - keep, keep)) is not None:  # whole: only "\n" is missing
        os.write(fd, b"\n")
        os.fsync(fd)
        return size + 1
    os.ftruncate(fd, keep)
    os.fsync(fd)
    print(f"refllm: repaired {str(path)!r}: removed an unfinished last line of {size - keep} "
          f"bytes (a writer was killed mid-line); the {keep} bytes before it are intact",
          file=sys.stderr)
    return keep


def _as_record(fragment: bytes) -> dict[str, Any] | None:
    """The JSON object that ``fragment`` (a last line without its newline) is, if it is one."""
    try:
        rec = json.loads(fragment.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return rec if isinstance(rec, dict) else None


def _contains(fd: int, size: int, path: pathlib.Path, key: str, value: Any) -> bool:
    data = os.pread(fd, size, 0).decode("utf-8", errors="replace")
    return any(rec.get(key) == value for _, rec in _parse(data, path, complete_only=True))


def append_jsonl(path: PathLike, record: dict[str, Any], *, unique: str | None = None) -> bool:
    """Append ``record`` as one JSON line (see the module docstring); False if a duplicate.

    ``unique``: a key; when ``record`` has it and a record in the file already has the same
    value, nothing is written and False is returned.
    """
    path = pathlib.Path(path)
    data = (json.dumps(record, allow_nan=True) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path) as fd:
        size = _repair_tail(fd, path)
        if unique is not None and unique in record and _contains(fd, size, path, unique,
                                                                 record[unique]):
            return False
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise RecordWriteError(
                f"could not append a {record.get('kind', '?')!r} record to {str(path)!r}: {exc} "
                f"(the {size} bytes of earlier records are intact)") from exc
    return True


def _parse(text: str, path: pathlib.Path, *,
           complete_only: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    lines = text.split("\n")
    last = lines.pop()  # after the last newline: empty, an unfinished write, or a whole record
    if not complete_only and _as_record(last.encode()) is not None:
        lines.append(last)
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(path)!r} line {n} is not a JSON record: {exc}") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{str(path)!r} line {n} is a JSON {type(rec).__name__}, not a "
                             f"record (a JSON object): {line[:80]}")
        yield n, rec


def read_jsonl(path: PathLike, kind: str | None = None, *,
               unique: str | None = None) -> list[dict[str, Any]]:
    """The complete records of ``path`` (of one ``kind`` when given), in order.

    ``unique``: a key that names one record (``"run_id"``): two different records with the same
    value are a `ValueError` naming both lines; identical copies are read once.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise ValueError(f"{str(path)!r} is a folder, not a records file") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{str(path)!r} is not UTF-8 text (byte {exc.start}): not a records "
                         f"file") from None
    out: list[dict[str, Any]] = []
    seen: dict[Any, tuple[int, dict[str, Any]]] = {}
    for n, rec in _parse(text, path, complete_only=False):
        if kind is not None and rec.get("kind") != kind:
            continue
        if unique is not None and unique in rec:
            value = rec[unique]
            if value in seen:
                first, earlier = seen[value]
                if earlier == rec:
                    continue
                raise ValueError(
                    f"{str(path)!r} has two different records for {unique} {value!r}, on lines "
                    f"{first} and {n} (two processes trained the same run?): keep one of the two "
                    f"lines and delete the other")
            seen[value] = (n, rec)
        out.append(rec)
    return out
