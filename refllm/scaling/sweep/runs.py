"""The sweep: train every (width, seed) of a preset, appending one record per finished run.

Layout of the output folder ``out``:

    out/records.jsonl          one "run" record per finished run (the training layer's run record,
                               plus run_id, preset, d_model and the load average), appended under
                               an exclusive lock (fcntl.flock) and fsync'd the moment a run ends;
                               one "sweep" record per start (preset, estimate, budget, load)
    out/runs/<run_id>/         that run's own records (refllm.train)

A run is named by ``run_id = <preset>-d<width>-s<seed>-<hash>`` (in an IsoFLOP ladder
``<preset>-C<budget>-d<width>-s<seed>-<hash>``, and ``<preset>-holdout-...`` for its held-out run),
the hash being the SHA-256 of its
full `TrainConfig` (sorted-key JSON): a rerun skips every run_id already in ``records.jsonl``, so a
crash or Ctrl-C loses only the runs in flight, and a changed recipe never reuses an old result.

Sharing a ladder between machines: ``shard=(i, n)`` trains the runs of shard i
(`refllm.scaling.sweep.shard`). All shards may append to one ``records.jsonl`` on a shared file
system (flock), or write to their own folders (then concatenate the records files).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from refllm._io import append_jsonl, read_jsonl
from refllm.scaling.sweep.presets import Preset
from refllm.scaling.sweep.shard import parse_shard, shard_from_env, shard_runs

RECORDS = "records.jsonl"
__all__ = ["Run", "plan", "sweep", "parse_shard", "shard_from_env", "shard_runs", "RECORDS"]


@dataclass(frozen=True)
class Run:
    run_id: str
    preset: str
    d_model: int
    seed: int
    config: Any          # refllm.train.TrainConfig
    flops: float         # training FLOPs (3 x Kaplan forward FLOPs x tokens): the cost for sharding
    budget: float | None = None  # an IsoFLOP ladder's compute budget C of this run
    role: str = "ladder"         # "ladder", or "holdout": trained after the fit, to test it


def config_hash(config: Any) -> str:
    return hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()


def plan(preset: Preset) -> list[Run]:
    """Every run of ``preset``, by width then seed (an IsoFLOP ladder: by budget, width, seed;
    its held-out run comes from the fit, `holdout_run`)."""
    if preset.isoflop:
        return [make_run(preset, d, seed, budget) for budget, widths in
                zip(preset.budgets, preset.budget_widths) for d in widths for seed in preset.seeds]
    return [make_run(preset, d, seed) for d in preset.widths for seed in preset.seeds]


def budget_label(budget: float) -> str:
    """A budget as it appears in run ids: 3e11, 5.4e8 (three significant digits)."""
    mantissa, _, exponent = f"{budget:.3g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def make_run(preset: Preset, d: int, seed: int, budget: float | None = None,
             role: str = "ladder") -> Run:
    """The run of width ``d`` and ``seed`` (at ``budget`` FLOPs in an IsoFLOP ladder)."""
    from refllm.model import GPTConfig, flops_per_token

    c = preset.train_config(d, seed, budget)
    where = "" if budget is None else ("holdout-" if role == "holdout" else "") + \
        f"C{budget_label(budget)}-"
    run_id = f"{preset.name}-{where}d{d}-s{seed}-{config_hash(c)[:10]}"
    per_token = flops_per_token(GPTConfig.from_dict(c.model_dict(256)), method="kaplan")
    return Run(run_id, preset.name, d, seed, c, 3.0 * per_token * c.tokens, budget, role)


def append_locked(path: pathlib.Path, record: dict[str, Any]) -> bool:
    """Append one record under an exclusive flock (safe across processes and machines).

    `refllm._io.append_jsonl`: the tail is repaired first, and a "run" record whose run_id is
    already in the file is skipped (False): two processes that trained one run leave one record.
    """
    return append_jsonl(path, {"time": time.time(), **record}, unique="run_id")


def finished(out: pathlib.Path) -> dict[str, dict]:
    """run_id -> record of every run already in ``out/records.jsonl``.

    Two different records for one run_id are a `ValueError` naming both lines.
    """
    path = out / RECORDS
    if not path.exists():
        return {}
    return {r["run_id"]: r for r in read_jsonl(path, kind="run", unique="run_id")
            if "run_id" in r}


_DATA: dict[tuple, Any] = {}


def load_data(config: Any) -> Any:
    """The TokenData of ``config``, loaded once per process."""
    key = (config.data, config.tokenizer, config.val_fraction, config.max_bytes)
    if key not in _DATA:
        from refllm.data import load_tokens

        _DATA[key] = load_tokens(config.data, tokenizer=config.tokenizer,
                                 val_fraction=config.val_fraction, max_bytes=config.max_bytes)
    return _DATA[key]


def run_folder(out: pathlib.Path, run_id: str) -> pathlib.Path:
    """``out/runs/<run_id>``, refused unless it lies inside ``out`` (a run id names a folder)."""
    folder = out / "runs" / run_id
    if not folder.resolve().is_relative_to(out.resolve()) or folder.resolve() == out.resolve():
        raise ValueError(f"run id {run_id!r} would write {str(folder.resolve())!r}, outside the "
                         f"output folder {str(out.resolve())!r}")
    return folder


def train_one(run: Run, out: pathlib.Path) -> dict[str, Any]:
    """Train ``run`` (resuming its folder), append its record to ``out/records.jsonl``."""
    from refllm.train import finished_runs, train

    run_dir = run_folder(out, run.run_id)
    done = finished_runs(run_dir) if run_dir.exists() else []
    if done:  # trained before a crash that came before the sweep's record
        result_record = done[-1]
    else:
        result_record = train(run.config, run_dir, resume=True, progress=False,
                              data=load_data(run.config)).record
    keep = {k: v for k, v in result_record.items() if k != "time"}
    record = {"kind": "run", **keep, "run_id": run.run_id, "preset": run.preset,
              "d_model": run.d_model, "loadavg": _loadavg(), "pid": os.getpid()}
    if run.budget is not None:  # an IsoFLOP run: its budget, role and the FLOPs it spent
        from refllm.scaling.sweep.presets import train_flops_per_token

        per_token = train_flops_per_token(run.config.model_dict(256))
        record |= {"budget": run.budget, "role": run.role,
                   "train_flops": float(per_token * run.config.tokens),
                   "flops_per_token": per_token}
    append_locked(out / RECORDS, record)
    return record


def _loadavg() -> list[float] | None:
    with contextlib.suppress(OSError, AttributeError):
        return [round(x, 2) for x in os.getloadavg()]
    return None


ORPHAN_POLL_S = 0.2  # how often a worker looks whether its parent is still there


def _init_worker(data: dict, parent: int) -> None:
    import torch

    torch.set_num_threads(1)
    _DATA.update(data)
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True,
                     name="refllm-orphan-watch").start()


def _exit_when_orphaned(parent: int, poll_s: float = ORPHAN_POLL_S) -> None:
    """End this worker process the moment its parent is gone (killed, even with SIGKILL).

    A pool's workers outlive a parent killed without a chance to terminate them; left alone they
    would finish their runs and append them while a rerun trains the same runs again. The parent
    is gone when this process is re-parented (``os.getppid()`` changes). What the worker was
    writing is safe: records are appended whole (`refllm._io`), a checkpoint's temporary is
    removed by the next start, and the run resumes from its last checkpoint.
    """
    while os.getppid() == parent:
        time.sleep(poll_s)
    os._exit(EXIT_ORPHANED)


EXIT_ORPHANED = 75  # EX_TEMPFAIL: stopped, to be rerun


def _worker(args: tuple[Run, pathlib.Path]) -> dict[str, Any]:
    return train_one(*args)


def execute(runs: list[Run], out: pathlib.Path, *, workers: int, order: dict[str, float],
            on_record: Any = None) -> list[dict]:
    """Train ``runs`` (longest first by ``order``) on ``workers`` processes; records as they end."""
    runs = sorted(runs, key=lambda r: (-order.get(r.run_id, r.flops), r.run_id))
    if workers <= 1 or len(runs) <= 1:
        results = []
        for r in runs:
            results.append(train_one(r, out))
            if on_record:
                on_record(results[-1])
        return results
    import multiprocessing as mp

    data = {k: v for k, v in _DATA.items()}
    ctx = mp.get_context("spawn")
    results = []
    with ctx.Pool(workers, initializer=_init_worker, initargs=(data, os.getpid())) as pool:
        try:
            for rec in pool.imap_unordered(_worker, [(r, out) for r in runs]):
                results.append(rec)
                if on_record:
                    on_record(rec)
        except BaseException:
            pool.terminate()
            raise
    return results


@dataclass
class SweepResult:
    out: pathlib.Path
    planned: list[Run]          # this shard's runs
    skipped: list[str]          # run_ids already finished before this call
    records: list[dict]         # the records of the runs trained by this call
    estimate: Any               # sweep.budget.Estimate, or None when nothing was left
    wall_s: float


def sweep(preset: Preset, out: str | pathlib.Path, *, shard: tuple[int, int] | None = None,
          workers: int | None = None, force: bool = False, progress: bool = True,
          on_record: Any = None, log: Any = None, planned: list[Run] | None = None
          ) -> SweepResult:
    """Run this shard's unfinished runs of ``preset`` into ``out`` (see the module docstring).

    ``planned``: ``plan(preset)`` when the caller has it already (a command plans once).

    ``log``: called with a line of text (the estimate) before training starts. Before training
    it times every width and raises `refllm.scaling.sweep.budget.BudgetError` when the
    remaining runs would not finish within ``preset.budget_s`` (``force=True`` runs them anyway).
    """
    from refllm.scaling.sweep.budget import add_holdout, check_budget, estimate

    start = time.perf_counter()
    out = pathlib.Path(out)
    workers = preset.workers if workers is None else workers
    runs = plan(preset) if planned is None else planned
    if shard is not None:
        runs = shard_runs(runs, *shard)
    done = finished(out)
    todo = [r for r in runs if r.run_id not in done]
    skipped = [r.run_id for r in runs if r.run_id in done]
    if not todo:
        return SweepResult(out, runs, skipped, [], None, time.perf_counter() - start)
    for r in todo:  # every folder it will write, checked before anything is written
        run_folder(out, r.run_id)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(todo[0].config)
    est = estimate(todo, data, min(workers, len(todo)))
    if preset.holdout_budget is not None and shard is None and all(r.role == "ladder"
                                                                    for r in todo):
        add_holdout(est, todo, preset.holdout_budget)  # trained after these, by the caller
    total = check_budget(est, preset.budget_s, time.perf_counter() - start, force=force,
                         preset=preset.name)
    if log:
        log(f"  {est.describe()}; budget {preset.budget_s:.0f} s")
    append_locked(out / RECORDS, {
        "kind": "sweep", "preset": preset.name, "preset_config": preset.to_dict(),
        "shard": list(shard) if shard else None, "workers": workers, "runs": len(todo),
        "estimate_s": est.wall_s, "step_s": {str(d): v for d, v in est.step_s.items()},
        "slowdown": est.slowdown,
        "budget_s": preset.budget_s, "forced": total > preset.budget_s,
        "loadavg": _loadavg()})
    with _Bar(len(todo), est, enabled=progress) as bar:
        def record_done(rec: dict) -> None:
            bar.done(rec)
            if on_record:
                on_record(rec)

        records = execute(todo, out, workers=workers, order=est.run_s, on_record=record_done)
    return SweepResult(out, runs, skipped, records, est, time.perf_counter() - start)


class _Bar:
    """tqdm of runs done; the postfix is the time left, the estimate rescaled by the pace so far."""

    def __init__(self, total: int, est: Any, *, enabled: bool) -> None:
        self.total, self.est, self.enabled = total, est, enabled
        self.bar: Any = None
        self.left = sum(est.run_s.values())
        self.start = time.perf_counter()

    def __enter__(self) -> _Bar:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, unit="run", disable=None, dynamic_ncols=True)
            self.bar.set_postfix_str(f"~{self.est.wall_s:.0f} s left (estimate)")
        return self

    def done(self, rec: dict) -> None:
        if self.bar is None:
            return
        self.left -= self.est.run_s.get(rec["run_id"], 0.0)
        done_work = sum(self.est.run_s.values()) - self.left
        pace = (time.perf_counter() - self.start) / max(done_work / self.est.workers, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix_str(f"d{rec['d_model']} s{rec['seed']} "
                                 f"{rec['final_val_loss']:.4f}; "
                                 f"~{pace * self.left / self.est.workers:.0f} s left")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
