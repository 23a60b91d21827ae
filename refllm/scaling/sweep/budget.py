"""How long a sweep will take, measured before it starts, and the refusal of one that cannot fit.

For every width of the ladder the real training loop (`refllm.train.train`) runs twice on the
sweep's own data and device, for k1 and k2 steps (1-step validation slice, no records kept); the
time of one step is

    step_s = (t(k2) - t(k1)) / (k2 - k1)

which cancels the fixed costs (building the model, the first-call warm-up of torch or CUDA). A run
of S steps with a validation slice of V tokens then takes about

    run_s = S * step_s + (V / (batch_size * seq_len)) * step_s / 3

(evaluation is a forward pass only: about a third of a training step per token; Kaplan et al.
2020, §2.1, C = 6 N per token for training against 2 N for the forward pass). The runs are packed
onto the workers longest first (LPT scheduling, Graham 1969), whose makespan is the estimate.

On a CPU shared with other work, the wall time of a few steps says little about a long run (the
scheduler may favour a process that has just woken up, or a burst of other work may slow the few
timed steps tenfold; measured cases in docs/scaling.md, "The budget"). So on the CPU a step is
timed in this process's CPU seconds (the work, which the load does not change), and scaled by the
share of a core each of the W workers will get among the other work already there (l runnable tasks
besides this one, on c cores):

    slowdown = max(1, (l + W) / c)

l is the median of the kernel's instantaneous count of runnable tasks (/proc/loadavg, fourth
field), sampled while the steps are timed, less this process; the 1-minute load average is the
fallback where /proc is missing (it lags the load). On an idle machine the factor is 1.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from refllm.scaling.sweep.shard import lpt

K1, K2 = 2, 6


class BudgetError(RuntimeError):
    """The sweep would not finish within its preset's budget (``--force`` runs it anyway)."""


@dataclass
class Estimate:
    """Seconds per step for each width, per run, and the makespan over the workers."""

    step_s: dict[int, float]
    run_s: dict[str, float]            # run_id -> seconds
    wall_s: float                      # makespan of the remaining runs on the workers
    workers: int
    measured_s: float                  # time spent measuring
    per_worker: list[float] = field(default_factory=list)
    load: float | None = None          # other runnable tasks when estimated (see the docstring)
    slowdown: float = 1.0              # the step times' factor for the load (CPU)
    after_s: float = 0.0               # a run that follows the others (the IsoFLOP held-out run)

    def describe(self) -> str:
        steps = ", ".join(f"d{d} {1e3 * s:.0f} ms" for d, s in sorted(self.step_s.items()))
        load = "" if self.slowdown == 1.0 else (
            f", x{self.slowdown:.1f} for {self.load:.0f} other runnable task(s) on this CPU")
        after = "" if not self.after_s else f", then ~{self.after_s:.0f} s for the held-out run"
        return (f"estimated {self.wall_s:.0f} s wall for {len(self.run_s)} runs on "
                f"{self.workers} worker(s){after} (time per training step: {steps}{load})")


def time_step(config: Any, data: Any, k1: int = K1, k2: int = K2) -> float:
    """Seconds per optimizer step of ``config`` on ``data`` (the real loop, k2 - k1 steps): CPU
    seconds of this process on the CPU (what a step costs, whatever else runs), wall seconds on
    CUDA (where the work is not this process's CPU time)."""
    from refllm.train import train

    clock = time.perf_counter if config.device == "cuda" else time.process_time
    times = []
    for k in (k1, k2):
        c = config.replace(max_steps=k, warmup_steps=0, eval_tokens=config.seq_len,
                           log_interval=k, eval_interval=0, checkpoint_interval=0,
                           checkpoint_final=False)
        with tempfile.TemporaryDirectory(prefix="refllm-timing-") as tmp:
            start = clock()
            train(c, tmp, progress=False, data=data)
            times.append(clock() - start)
    if times[1] <= times[0]:  # noise on a busy machine: fall back to the upper bound t(k2) / k2
        return times[1] / k2
    return (times[1] - times[0]) / (k2 - k1)


def lpt_makespan(durations: list[float], workers: int) -> list[float]:
    """Load of each worker when jobs are handed out longest first to the least loaded worker."""
    jobs = list(enumerate(durations))
    return [sum(d for _, d in b) for b in lpt(jobs, workers, lambda j: j[1], lambda j: j[0])]


def slowdown(workers: int, load: float | None, cores: int) -> float:
    """How much slower than timed a CPU run gets: max(1, (load + workers) / cores)."""
    return max(1.0, ((load or 0.0) + workers) / cores)


def estimate(runs: list[Any], data: Any, workers: int, *, load: float | None = None) -> Estimate:
    """Time every width of ``runs`` (objects with ``.d_model``, ``.run_id``, ``.config``).

    ``load``: the other work on the machine, in runnable tasks (default: measured while timing,
    see the module docstring)."""
    import torch

    start = time.perf_counter()
    on_cpu = bool(runs) and runs[0].config.device != "cuda"
    samples: list[float] = []
    threads = torch.get_num_threads()
    if on_cpu:
        torch.set_num_threads(1)  # as in a worker
    try:
        by_width = {r.d_model: r.config for r in runs}
        if by_width:  # the first training of a process pays one-time costs: not a step's
            time_step(by_width[min(by_width)], data, 1, 2)
        step_s = {}
        for d, c in sorted(by_width.items()):
            samples.append(_runnable_others())
            step_s[d] = time_step(c, data)
            samples.append(_runnable_others())
    finally:
        torch.set_num_threads(threads)
    if load is None:
        known = sorted(x for x in samples if not math.isnan(x))
        load = known[len(known) // 2] if known else _load1()
    factor = slowdown(workers, load, os.cpu_count() or 1) if on_cpu else 1.0
    run_s = {}
    for r in runs:
        c, s = r.config, step_s[r.d_model] * factor
        eval_steps = math.ceil(c.eval_tokens / (c.batch_size * c.seq_len))
        run_s[r.run_id] = c.max_steps * s + eval_steps * s / 3
    loads = lpt_makespan(list(run_s.values()), workers)
    return Estimate(step_s=step_s, run_s=run_s, wall_s=max(loads, default=0.0), workers=workers,
                    measured_s=time.perf_counter() - start, per_worker=loads, load=load,
                    slowdown=factor)


def add_holdout(est: Estimate, runs: list[Any], holdout_budget: float) -> None:
    """Add an IsoFLOP ladder's held-out run, trained alone after the others, to ``est``.

    Its width is chosen by the fit, so its time is estimated from the runs of the largest budget
    still to train: their median seconds per FLOP (at and above the optimum a step's time grows
    with its FLOPs), times the held-out budget."""
    top = max(r.budget for r in runs)
    per_flop = sorted(est.run_s[r.run_id] / r.budget for r in runs if r.budget == top)
    est.after_s = per_flop[len(per_flop) // 2] * holdout_budget
    est.wall_s += est.after_s


def check_budget(est: Estimate, budget_s: float, spent_s: float, *, force: bool,
                 preset: str) -> float:
    """Raise `BudgetError` (with the estimate) when spent + estimate exceeds the budget (unless
    ``force``); return spent + estimate."""
    total = spent_s + est.wall_s
    if total > budget_s and not force:
        raise BudgetError(
            f"preset {preset!r} cannot finish within its budget of {budget_s:.0f} s here: "
            f"{est.describe()}, plus {spent_s:.0f} s to load the data and time the steps, "
            f"{total:.0f} s in all (load average {_loadavg()}). Run it on a less loaded machine, "
            f"share it between machines (--shard i/n), or pass --force to run it anyway.")
    return total


def _runnable_others() -> float:
    """Runnable tasks on the machine now, besides this process (nan when /proc is missing)."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return math.nan
    return float(max(0, running - 1))


def _load1() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _loadavg() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


H200_BF16_PEAK = 790e12
"""FLOP/s of bf16 on one H200 that the time model assumes: below the SXM part's dense tensor-core
peak (989 TFLOP/s, the H100's chip), so that the model errs toward slower."""


@dataclass
class GPUTimeModel:
    """Seconds a preset should take on one GPU, from its FLOPs and kernel launches (see
    `gpu_time_model`); a bound to compare the first real timing with, not a measurement."""

    flops: float          # training FLOPs of every run (3 x exact forward per token x tokens)
    steps: int            # optimizer steps of every run
    compute_s: float      # flops / (peak x mfu)
    launch_s: float       # steps x launches per step x seconds per launch
    wall_s: float         # max of the two per run, summed, over the workers sharing the GPU

    def describe(self) -> str:
        return (f"{self.flops:.3g} FLOPs in {self.steps:,} steps: {self.compute_s:.0f} s of "
                f"compute, {self.launch_s:.0f} s of kernel launches; ~{self.wall_s:.0f} s wall")


def gpu_time_model(preset: Any, *, peak: float = H200_BF16_PEAK, mfu: float = 0.3,
                   launches_per_layer: int = 40, launch_s: float = 10e-6) -> GPUTimeModel:
    """The time ``preset`` should take on one GPU, under stated assumptions.

    Per run: compute = FLOPs / (peak x mfu), with FLOPs = 3 x the exact forward count x tokens
    (`refllm.model.counting`); launches = steps x (launches_per_layer x n_layer + 40) x launch_s
    (eager PyTorch: about 12 kernels per block forward, twice that backward, a few for the
    optimizer step with foreach; ~10 us of host time each). A run takes the larger of the two
    (small models are bound by launches, large ones by the tensor cores); the preset's workers
    share one GPU, so their runs add up. Evaluation is left out (a forward pass over
    eval_tokens per run: under 1% here)."""
    from refllm.scaling.sweep.presets import train_flops_per_token
    from refllm.scaling.sweep.runs import plan

    total_flops, total_steps, compute, launch, wall = 0.0, 0, 0.0, 0.0, 0.0
    for run in plan(preset):
        c = run.config
        flops = train_flops_per_token(c.model_dict(256)) * c.tokens
        per_step = launches_per_layer * c.model["n_layer"] + 40
        run_compute, run_launch = flops / (peak * mfu), c.max_steps * per_step * launch_s
        total_flops += flops
        total_steps += c.max_steps
        compute += run_compute
        launch += run_launch
        wall += max(run_compute, run_launch)
    return GPUTimeModel(total_flops, total_steps, compute, launch, wall)
