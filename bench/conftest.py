"""Shared set-up for the benchmarks: fixed threads, and a table of ratios printed at the end.

Every row comes from ``benchutil`` (``compare`` / ``compare_memory``, and the oracle's rows):
candidate and baseline timed round by round, alternating, in one process; the median per-round
ratio with its IQR and min/max, the one-thread CPU-time ratio, and peak-memory rows measured in
subprocesses. No ratio is taken between two separately timed pytest-benchmark entries.

The table goes to the terminal summary (no ``-s`` needed) and, with the thread count, machine,
date and load average, to ``bench-ratios.json`` (or the path in ``REFLLM_BENCH_RATIOS``).
"""

from __future__ import annotations

import datetime
import json
import os
import platform

import benchutil
import pytest
import torch

from refllm._io import write_text_atomically

THREADS = int(os.environ.get("REFLLM_BENCH_THREADS", "2"))


@pytest.fixture(autouse=True, scope="session")
def _fixed_threads():
    torch.set_num_threads(THREADS)
    yield


def _environment() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                       cpu)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "threads": THREADS, "device": "cpu", "cpu": cpu, "cores": os.cpu_count(),
        "torch": torch.__version__, "python": platform.python_version(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def _verdict(row: dict) -> str:
    if row.get("meets_target") is None:
        return ""
    if row["kind"] == "memory":  # a memory row has target_mib, not target
        limit = f"<= {row.get('target_mib')} MiB"
    else:
        limit = {"oracle": f">= {row['target']} examples/s",
                 "oracle-whole": f"<= {row['target']} s"}.get(row["kind"], f"<= {row['target']}x")
    return f"  target {limit}: {'met' if row['meets_target'] else 'MISSED'}"


def format_row(row: dict) -> str:
    """One line of the terminal table."""
    head = f"{row['group']:<34} {row['candidate']:<16} / {row['baseline']:<16}"
    if row["kind"] == "memory":
        return (f"{head} peak +{row['candidate_peak_mib']:8.1f} / +{row['baseline_peak_mib']:8.1f}"
                f" MiB{_verdict(row)}")
    if row["kind"] == "oracle":
        return (f"{row['candidate']:<52} threads={row['threads']} "
                f"{row['examples_per_s']:7.1f} examples/s "
                f"({row['examples_per_cpu_s']:.1f} per CPU s)"
                f"{_verdict(row)}")
    if row["kind"] == "oracle-whole":
        return (f"{row['candidate']:<52} whole check, {row['examples']} examples: "
                f"{row['seconds']:6.1f} s ({row['cpu_seconds']:.1f} CPU s){_verdict(row)}")
    return (f"{head} {row['ratio']:6.2f}x  IQR {row['ratio_q1']:.2f}-{row['ratio_q3']:.2f}"
            f"  range {row['ratio_min']:.2f}-{row['ratio_max']:.2f}  cpu@1 "
            f"{row['cpu1_ratio']:.2f}x{_verdict(row)}")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    rows = benchutil.ROWS
    if not rows:
        return
    env = _environment()
    tr = terminalreporter
    tr.section("refllm ratios: candidate / baseline, same process")
    tr.line(f"env: {env}")
    tr.line("time rows: median of per-round ratios (interleaved, alternating order), IQR, "
            "min-max; cpu@1 = CPU-time ratio at one thread")
    for row in rows:
        tr.line(format_row(row))
    path = os.environ.get("REFLLM_BENCH_RATIOS", "bench-ratios.json")
    write_text_atomically(path, json.dumps({"env": env, "rows": rows}, indent=2))
    tr.line(f"written to {path}")
