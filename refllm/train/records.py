"""Run records: append-only JSON lines (`refllm._io`), one object per line, each fsync'd.

Every record has ``"kind"`` (``"eval"`` while a run goes, one ``"run"`` when it ends) and
``"time"`` (Unix seconds). Appends go through `refllm._io.append_jsonl`: under a lock, an
unfinished last line left by a killed writer is cut off first, then the whole line is written in
one ``write``; a failed write (a full disk: ``ENOSPC``) is cut back, so the earlier records stay
intact and `RecordWriteError` names the file and the cause. Readers skip nothing silently except
an unterminated last line (a writer killed mid-line), which is not a record.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "records.jsonl"
>>> append_record(path, {"kind": "eval", "step": 1, "val_loss": 2.5})
>>> [r["val_loss"] for r in read_records(path, kind="eval")]
[2.5]
"""

from __future__ import annotations

import os
import pathlib
import platform
import sys
import time
from typing import Any

from refllm._io import RecordWriteError, append_jsonl, read_jsonl

__all__ = ["RecordWriteError", "append_record", "read_records", "environment"]


def append_record(path: str | pathlib.Path, record: dict[str, Any]) -> None:
    """Append one record (a JSON object on one line, stamped with ``time``) and fsync it."""
    append_jsonl(path, {"time": time.time(), **record})


def read_records(path: str | pathlib.Path, kind: str | None = None) -> list[dict[str, Any]]:
    """All complete records of a file (of one ``kind`` when given), in order."""
    return read_jsonl(path, kind)


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
