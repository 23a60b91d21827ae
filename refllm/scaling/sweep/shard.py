"""Sharing a ladder between machines: which runs shard i of n trains, with no scheduler.

Shard i of n (``--shard i/n``, 0 <= i < n; or Slurm's ``SLURM_ARRAY_TASK_ID -
SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``, or of ``MAX - MIN + 1``) takes the runs that
LPT scheduling gives it (Graham 1969: longest FLOPs first, each to the least loaded shard, ties by
run_id): a partition of the runs that every machine computes alike from the preset alone.

    #SBATCH --array=0-3
    refllm scaling --preset h200 --out /shared/ladder     # each task: its quarter of the runs

>>> parse_shard("1/4")
(1, 4)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard must be i/n with integers 0 <= i < n, got {text!r}") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard must be i/n with 0 <= i < n, got {text!r}")
    return i, n


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """(i, n) from Slurm's job-array variables, or None outside an array job."""
    env = dict(os.environ) if env is None else env
    if "SLURM_ARRAY_TASK_ID" not in env:
        return None
    task = int(env["SLURM_ARRAY_TASK_ID"])
    low = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
    if "SLURM_ARRAY_TASK_COUNT" in env:
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
    elif "SLURM_ARRAY_TASK_MAX" in env:
        count = int(env["SLURM_ARRAY_TASK_MAX"]) - low + 1
    else:
        raise ValueError("SLURM_ARRAY_TASK_ID is set but neither SLURM_ARRAY_TASK_COUNT nor "
                         "SLURM_ARRAY_TASK_MAX is; cannot tell how many shards there are")
    return parse_shard(f"{task - low}/{count}")


T = TypeVar("T")


def lpt(items: list[T], bins: int, cost: Callable[[T], float],
        tie: Callable[[T], Any]) -> list[list[T]]:
    """Longest processing time first (Graham 1969): each item, by decreasing cost (then by
    ``tie``), goes to the least loaded bin (the first of equals). The one scheduler of the sweep:
    runs onto shards here, run times onto workers for the estimate (`.budget`)."""
    loads = [0.0] * bins
    out: list[list[T]] = [[] for _ in range(bins)]
    for item in sorted(items, key=lambda x: (-cost(x), tie(x))):
        k = loads.index(min(loads))
        loads[k] += cost(item)
        out[k].append(item)
    return out


def shard_runs(runs: list[Any], index: int, count: int) -> list[Any]:
    """The runs of shard ``index`` of ``count`` (LPT on FLOPs; the same on every machine)."""
    mine = {r.run_id for r in lpt(runs, count, lambda r: r.flops, lambda r: r.run_id)[index]}
    return [r for r in runs if r.run_id in mine]
