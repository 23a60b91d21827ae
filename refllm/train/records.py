"""Run records: append-only JSON lines, one object per line, each write flushed and fsync'd.

Every record has ``"kind"`` (``"eval"`` while a run goes, one ``"run"`` when it ends) and
``"time"`` (Unix seconds). A record is written with a single ``write`` of the whole line on a file
opened for appending; if that fails (a full disk: ``ENOSPC``), the file is cut back to its length
before the write, so the earlier records stay intact and readable, and `RecordWriteError` names
the file and the cause. Readers skip nothing silently except an unterminated last line (a writer
killed mid-line), which is not a record.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "records.jsonl"
>>> append_record(path, {"kind": "eval", "step": 1, "val_loss": 2.5})
>>> [r["val_loss"] for r in read_records(path, kind="eval")]
[2.5]
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import sys
import time
from typing import Any


class RecordWriteError(OSError):
    """A record could not be appended; the records written before it are intact."""


def append_record(path: str | pathlib.Path, record: dict[str, Any]) -> None:
    """Append one record (a JSON object on one line) and fsync it."""
    record = {"time": time.time(), **record}
    data = (json.dumps(record, allow_nan=True, sort_keys=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write: {written} of {len(data)} bytes")
            os.fsync(fd)
        except OSError as exc:
            _truncate_quietly(fd, size)
            raise RecordWriteError(
                f"could not append a {record.get('kind', '?')!r} record to {str(path)!r}: {exc} "
                f"(the {size} bytes of earlier records are intact)") from exc
    finally:
        os.close(fd)


def _truncate_quietly(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
    except OSError:
        pass


def read_records(path: str | pathlib.Path, kind: str | None = None) -> list[dict[str, Any]]:
    """All complete records of a file (of one ``kind`` when given), in order."""
    text = pathlib.Path(path).read_text()
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is empty or an unfinished write
    out = []
    for n, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(path)!r} line {n} is not a JSON record: {exc}") from None
        if kind is None or rec.get("kind") == kind:
            out.append(rec)
    return out


def _cpu_model() -> str:
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict[str, Any]:
    """Package versions and hardware, for the run record."""
    import numpy
    import torch

    from refllm import __version__

    hw: dict[str, Any] = {"cpu": _cpu_model(), "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        hw["cuda_device"] = torch.cuda.get_device_name()
        hw["cuda_count"] = torch.cuda.device_count()
    return {
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "numpy": numpy.__version__, "refllm": __version__},
        "hardware": hw, "platform": platform.platform(),
    }
