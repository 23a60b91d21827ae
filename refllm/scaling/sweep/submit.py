"""Launch a ladder as one Slurm job array through submitit: one array task per shard.

    refllm scaling --preset h200 --submitit gpu --shards 8 --slurm-time 60
    refllm scaling --preset cpu --submitit local --shards 2 --wait   # no Slurm: local processes

Each array task runs ``sweep(preset, out, shard=(i, n))``, which appends its finished runs to the
one ``out/records.jsonl`` (flock, so the tasks share it on a shared file system) and skips the runs
already there. That makes a requeue safe: a task that Slurm preempts or that reaches its time
limit is resubmitted by submitit (`ShardTask.checkpoint`) and starts again, losing only the run it
was training. submitit's own logs and pickles go to ``out/submitit/``.

The partition ``local`` uses submitit's LocalExecutor: the same tasks run as processes on this
machine, without Slurm (that is how the tests run this path). submitit is an optional extra
(``pip install "refllm[slurm]"``).

Deviation from a plain ``sbatch --array``: the budget estimate is made by every task for its own
shard on the node it lands on, not once up front on the login node, whose CPU says nothing about
the GPU nodes' speed; a task whose shard does not fit its budget fails with the estimate in its log
(``--force`` passes through).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any

from refllm._validation import require_int
from refllm.scaling.sweep.presets import Preset

LOCAL = "local"
MAX_REQUEUES = 3  # submitit's default for preemption and timeouts


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError('--submitit needs the optional package submitit: pip install '
                         '"refllm[slurm]" (or pip install submitit)') from None
    return submitit


@dataclass
class ShardTask:
    """One array task: train shard ``index`` of ``count`` of ``preset`` into ``out``.

    A callable object rather than a function so that submitit can requeue it: on preemption or
    timeout, submitit calls ``checkpoint`` and resubmits what it returns (the same task; the sweep
    skips what is already in the records file)."""

    preset: Preset
    out: str
    index: int
    count: int
    workers: int | None = None
    force: bool = False

    def __call__(self) -> dict[str, Any]:
        from refllm.scaling.sweep.runs import sweep

        result = sweep(self.preset, self.out, shard=(self.index, self.count),
                       workers=self.workers, force=self.force, progress=False,
                       log=lambda line: print(line, flush=True))
        return {"shard": f"{self.index}/{self.count}", "trained": len(result.records),
                "skipped": len(result.skipped), "wall_s": result.wall_s}

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        return _submitit().helpers.DelayedSubmission(self)


def executor(partition: str, folder: pathlib.Path, *, shards: int, time_min: int,
             gpus: int, cpus: int) -> Any:
    """A submitit executor for ``partition`` (``local``: LocalExecutor, no Slurm)."""
    submitit = _submitit()
    if partition == LOCAL:
        ex = submitit.LocalExecutor(folder=str(folder))
        ex.update_parameters(timeout_min=time_min, gpus_per_node=gpus, cpus_per_task=cpus)
        return ex
    ex = submitit.AutoExecutor(folder=str(folder), slurm_max_num_timeout=MAX_REQUEUES)
    ex.update_parameters(slurm_partition=partition, timeout_min=time_min,
                         gpus_per_node=gpus, cpus_per_task=cpus, slurm_array_parallelism=shards,
                         name="refllm-scaling")
    return ex


def submit(preset: Preset, out: pathlib.Path, partition: str, *, shards: int, time_min: int = 60,
           gpus: int | None = None, cpus: int | None = None, workers: int | None = None,
           force: bool = False) -> list[Any]:
    """Submit one job array of ``shards`` tasks; return submitit's jobs (one per shard)."""
    if not isinstance(partition, str) or not partition.strip():
        raise ValueError(f"--submitit needs a Slurm partition name (or {LOCAL!r}), got "
                         f"{partition!r}")
    require_int("--shards", shards, low=1)
    require_int("--slurm-time", time_min, low=1)
    gpus = (0 if preset.device == "cpu" else 1) if gpus is None else require_int("gpus", gpus,
                                                                                  low=0)
    cpus = (workers or preset.workers) if cpus is None else require_int("cpus", cpus, low=1)
    out.mkdir(parents=True, exist_ok=True)
    ex = executor(partition, out / "submitit", shards=shards, time_min=time_min, gpus=gpus,
                  cpus=cpus)
    tasks = [ShardTask(preset, str(out), i, shards, workers, force) for i in range(shards)]
    with ex.batch():
        jobs = [ex.submit(task) for task in tasks]
    return jobs
