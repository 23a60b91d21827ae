"""Shared set-up for the benchmarks: fixed threads, and ratios against a baseline of the same run.

Each benchmark calls :func:`benchutil.role` to set its group to say whether it is the group's
``baseline`` (PyTorch's op) or a ``candidate`` (refllm's), with an optional target ratio. At the end
of the run a table gives, per group, median(candidate) / median(baseline) and whether it meets the
target, with the thread count, device and load average recorded beside it; it is also written to
``bench-ratios.json`` (or the path in ``REFLLM_BENCH_RATIOS``).
"""

from __future__ import annotations

import json
import os
import platform

import pytest
import torch

THREADS = int(os.environ.get("REFLLM_BENCH_THREADS", "2"))


@pytest.fixture(autouse=True, scope="session")
def _fixed_threads():
    torch.set_num_threads(THREADS)
    yield


def _rows(session) -> list[dict]:
    groups: dict[str, list] = {}
    for bench in session.benchmarks:
        if bench.has_error or not bench.stats:
            continue
        groups.setdefault(bench.group, []).append(bench)
    rows = []
    for group, benches in sorted(groups.items(), key=lambda kv: str(kv[0])):
        base = [b for b in benches if b.extra_info.get("role") == "baseline"]
        for b in benches:
            info = b.extra_info
            if info.get("role") != "candidate":
                continue
            for ref in base:
                ratio = b.stats.median / ref.stats.median
                target = info.get("target_ratio")
                rows.append({
                    "group": group, "candidate": info.get("label", b.name),
                    "baseline": ref.extra_info.get("label", ref.name),
                    "candidate_median_s": b.stats.median, "baseline_median_s": ref.stats.median,
                    "ratio": ratio, "target": target,
                    "meets_target": None if target is None else ratio <= target,
                })
    return rows


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or not getattr(session, "benchmarks", None):
        return
    rows = _rows(session)
    if not rows:
        return
    env = {
        "threads": torch.get_num_threads(), "device": "cpu", "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    tr = terminalreporter
    tr.section("refllm ratios (candidate median / baseline median, same run)")
    tr.line(f"env: {env}")
    for r in rows:
        verdict = "" if r["target"] is None else (
            f"  target <= {r['target']}: {'met' if r['meets_target'] else 'MISSED'}")
        tr.line(f"{r['group']:<40} {r['candidate']:<28} / {r['baseline']:<28} "
                f"= {r['ratio']:6.2f}x{verdict}")
    path = os.environ.get("REFLLM_BENCH_RATIOS", "bench-ratios.json")
    with open(path, "w") as f:
        json.dump({"env": env, "rows": rows}, f, indent=2)
