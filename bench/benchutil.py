"""Helpers for the benchmarks: ratios measured so that a reader can trust them.

A ratio of two medians, each taken over its own block of rounds, moves with whatever else the
machine did during each block: on a loaded 2-core machine the optimizer ratios flipped between
0.07 and 9.6 from run to run. So :func:`compare` times the candidate and its baseline *interleaved*:
each round times both once, in alternating order, and the ratio is taken per round; the row reports
the median of those ratios with its interquartile range and min/max. Beside it,
:func:`cpu_ratio` gives the same ratio in CPU time (``time.process_time``) at one intra-op thread,
which load barely moves (a waiting process accrues no CPU time). :func:`peak_memory` measures the
extra resident memory of one call in a fresh subprocess, and :func:`allocator_peak` the peak of
the bytes torch's own allocator held during one call (from ``torch.profiler``'s allocation
events), a second meter to hold the first against.

Each measurement is appended to :data:`ROWS`; ``bench/conftest.py`` prints the table in the
terminal summary and writes it as JSON (``bench-ratios.json`` or ``$REFLLM_BENCH_RATIOS``).

"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROWS: list[dict[str, Any]] = []
"""Every row measured in this run (time and memory), in order; read by ``conftest.py``."""

BENCH_DIR = Path(__file__).resolve().parent


def _quartiles(xs: list[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q1, q2, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return q1, q2, q3


def _clock_rounds(candidate: Callable[[], Any], baseline: Callable[[], Any], rounds: int,
                  clock: Callable[[], float]) -> tuple[list[float], list[float]]:
    """Per-round times of both, interleaved; odd rounds run the baseline first."""
    cand, base = [], []
    for r in range(rounds):
        order = [(candidate, cand), (baseline, base)]
        for fn, out in order if r % 2 == 0 else order[::-1]:
            start = clock()
            fn()
            out.append(clock() - start)
    return cand, base


def interleaved(candidate: Callable[[], Any], baseline: Callable[[], Any], *, rounds: int = 7,
                warmup: int = 1, clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Median, quartiles and extremes of the per-round ratio candidate / baseline, interleaved."""
    _clock_rounds(candidate, baseline, warmup, clock)
    cand, base = _clock_rounds(candidate, baseline, rounds, clock)
    ratios = [c / b for c, b in zip(cand, base)]
    q1, median, q3 = _quartiles(ratios)
    return {"rounds": rounds, "ratio": median, "ratio_q1": q1, "ratio_q3": q3,
            "ratio_min": min(ratios), "ratio_max": max(ratios),
            "candidate_median_s": statistics.median(cand),
            "baseline_median_s": statistics.median(base)}


def cpu_ratio(candidate: Callable[[], Any], baseline: Callable[[], Any], *,
              rounds: int = 5) -> float:
    """Median per-round ratio of CPU time (``time.process_time``) at one intra-op thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return interleaved(candidate, baseline, rounds=rounds, clock=time.process_time)["ratio"]
    finally:
        torch.set_num_threads(before)


def compare(group: str, candidate: str, baseline: str, fn: Callable[[], Any],
            base_fn: Callable[[], Any], *, target: float | None = None, rounds: int = 7,
            cpu_rounds: int = 3) -> dict[str, Any]:
    """Measure ``fn`` against ``base_fn`` (interleaved wall time and one-thread CPU time), record
    the row in :data:`ROWS` and return it. ``target``: the largest acceptable median ratio."""
    row: dict[str, Any] = {"kind": "time", "group": group, "candidate": candidate,
                           "baseline": baseline, "threads": torch.get_num_threads()}
    row.update(interleaved(fn, base_fn, rounds=rounds))
    row["cpu1_ratio"] = cpu_ratio(fn, base_fn, rounds=cpu_rounds) if cpu_rounds else None
    row["target"] = target
    row["meets_target"] = None if target is None else row["ratio"] <= target
    ROWS.append(row)
    return row


_CHILD = """
import gc, json, resource, sys
sys.path[:0] = {paths!r}
import torch
torch.set_num_threads({threads})
import importlib
mod, _, name = {factory!r}.partition(":")
call = getattr(importlib.import_module(mod), name)(*{args!r})
call()  # warm up: lazy initialisation is not the op's memory
gc.collect()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()
def high_water_mark():
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmHWM:"))
before = rss()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the high-water mark to the current RSS (Linux >= 4.0)
    reset = True
except OSError:
    reset = False
call()
print(json.dumps({{"before": before, "peak": high_water_mark(), "reset": reset}}))
"""


def peak_memory(factory: str, *args: Any, threads: int = 1) -> int:
    """Extra peak resident memory (bytes) of one call, measured in a fresh Python process.

    ``factory`` is ``"module:function"`` (a module in bench/ or importable); ``function(*args)``
    builds the inputs and returns the zero-argument call to measure. The call runs once to warm
    up; then the process' high-water mark of resident memory (``VmHWM``) is reset to its current
    size (``/proc/self/clear_refs``) and the call runs again; the result is how far the mark rose.
    Not ``ru_maxrss``: Linux carries that over from the parent across ``fork`` and ``exec``, so a
    child of a large pytest process reported the parent's size. Where the reset is refused, the
    measurement raises `ValueError` rather than count the warm-up. Linux only.
    """
    code = _CHILD.format(paths=[str(BENCH_DIR), str(BENCH_DIR.parent)], threads=threads,
                         factory=factory, args=list(args))
    # a fixed mmap threshold: every large block comes from (and goes back to) the kernel, so the
    # warm-up call's freed memory is not kept by malloc and reused unseen by the second call
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MALLOC_MMAP_THRESHOLD_": "131072"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env, timeout=600)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not got["reset"]:
        raise ValueError("cannot reset the resident-memory high-water mark "
                         "(/proc/self/clear_refs): the peak would include the warm-up")
    return max(0, got["peak"] - got["before"])


def allocator_peak(call: Callable[[], Any]) -> int:
    """Peak bytes held by torch's CPU allocator during ``call()``, above what it held before.

    ``torch.profiler`` with ``profile_memory=True`` records one ``[memory]`` event per allocation
    (+bytes) and per free (-bytes), with a timestamp; their running sum in time order is what torch
    holds, and its maximum the peak. It is exact for tensors (the bytes asked for, no page or malloc
    rounding, independent of what malloc keeps) and blind to memory outside torch's allocator
    (BLAS/OpenMP workspaces, the interpreter); `peak_memory` sees all of that, page by page.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = [e for e in prof.profiler.kineto_results.events()  # type: ignore[union-attr]
              if e.name() == "[memory]" and e.device_type().name == "CPU"]
    held = peak = 0
    for e in sorted(events, key=lambda e: e.start_ns()):
        held += e.nbytes()
        peak = max(peak, held)
    return peak


def compare_memory(group: str, candidate: str, baseline: str, factory: str, *args: Any,
                   target_mib: float | None = None) -> dict[str, Any]:
    """Record a memory row: extra peak RSS of ``factory(candidate, *args)``'s call and of
    ``factory(baseline, *args)``'s, in MiB, each in its own process (see `peak_memory`)."""
    mib = 2.0**20
    cand = peak_memory(factory, candidate, *args) / mib
    base = peak_memory(factory, baseline, *args) / mib
    row = {"kind": "memory", "group": group, "candidate": candidate, "baseline": baseline,
           "candidate_peak_mib": cand, "baseline_peak_mib": base,
           "ratio": cand / base if base > 0 else None, "target_mib": target_mib,
           "meets_target": None if target_mib is None else cand <= target_mib}
    ROWS.append(row)
    return row


def markdown(payload: dict[str, Any]) -> str:
    """The JSON written by ``conftest.py`` as Markdown tables (for docs/benchmarks.md)::

        python -c "import json, sys; sys.path[:0] = ['bench']; import benchutil;
                   print(benchutil.markdown(json.load(open('bench-ratios.json'))))"
    """
    rows = payload["rows"]
    out: list[str] = []
    if any(r["kind"] == "time" for r in rows):
        out += ["| row | candidate / baseline | median ratio | IQR | min–max | "
                "CPU ratio, 1 thread | target |", "|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["kind"] == "time"):
        target = "" if r["target"] is None else \
            f"≤ {r['target']}x {'met' if r['meets_target'] else 'missed'}"
        out.append(f"| {r['group']} | {r['candidate']} / {r['baseline']} | {r['ratio']:.2f} | "
                   f"{r['ratio_q1']:.2f}–{r['ratio_q3']:.2f} | {r['ratio_min']:.2f}–"
                   f"{r['ratio_max']:.2f} | {r['cpu1_ratio']:.2f} | {target} |")
    memory = [r for r in rows if r["kind"] == "memory"]
    if memory:
        out += ["", "| row | candidate / baseline | candidate peak extra | baseline peak extra |",
                "|---|---|---|---|"]
        out += [f"| {r['group']} | {r['candidate']} / {r['baseline']} | "
                f"{r['candidate_peak_mib']:,.0f} MiB | {r['baseline_peak_mib']:,.0f} MiB |"
                for r in memory]
    oracle = [r for r in rows if r["kind"] == "oracle"]
    if oracle:
        out += ["", "| check | threads | examples/s | examples per CPU second | target |",
                "|---|---|---|---|---|"]
        for r in oracle:
            target = "" if r["target"] is None else \
                f"≥ {r['target']:g} {'met' if r['meets_target'] else 'missed'}"
            out.append(f"| `{r['candidate']}` | {r['threads']} | {r['examples_per_s']:.0f} | "
                       f"{r['examples_per_cpu_s']:.0f} | {target} |")
    whole = [r for r in rows if r["kind"] == "oracle-whole"]
    if whole:
        out += ["", "| whole default check | examples | seconds | CPU seconds | target |",
                "|---|---|---|---|---|"]
        out += [f"| `{r['candidate']}` | {r['examples']} | {r['seconds']:.1f} | "
                f"{r['cpu_seconds']:.1f} | ≤ {r['target']:g} s "
                f"{'met' if r['meets_target'] else 'missed'} |" for r in whole]
    return "\n".join(out).strip()
