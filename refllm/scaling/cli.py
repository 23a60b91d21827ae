"""Train a ladder of GPT sizes, fit the scaling law L(N) = E + A N^-alpha, and judge it.

The `cpu` preset (about 4 minutes on 2 idle cores, more on a busy machine) trains 6 widths of a
2-layer GPT (6.6k to 224k non-embedding parameters) on 2 million bytes of Python's standard
library each, two seeds in two parallel processes, then fits the law to the 5 smaller sizes
and checks that it predicts the largest one. The `h200` preset does the same with 7 larger sizes
on one GPU (budget 8 minutes).

  $ refllm scaling --preset cpu                       # results in runs/scaling-cpu/
  $ refllm scaling --preset cpu --report-only         # rebuild the table and plots from records
  $ refllm scaling --preset my_ladder.json            # your own ladder: a JSON object of
                                                      # refllm.scaling.sweep.presets.Preset keys
  $ refllm scaling --preset h200 --shard 0/4          # one of 4 machines (or a Slurm job array)
  $ refllm scaling --preset h200 --submitit gpu --shards 4   # submit that Slurm array (submitit)
  $ refllm scaling --preset cpu-isoflop               # IsoFLOP: 3 budgets x 5 sizes, then a
                                                      # held-out run at the predicted optimum
  $ refllm scaling --preset cpu --set block=llama     # the cpu ladder on the Llama block
                                                      # (results in runs/scaling-cpu-block-llama/)

An IsoFLOP preset (cpu-isoflop, about 5 minutes on 2 idle cores; h200-isoflop) trains, at each of
three compute budgets, five sizes for the tokens that spend the budget, fits Approach 2 (parabolas)
and Approach 3 (L(N, D)), then trains one more run at a larger budget and the size the fit calls
optimal, and judges the fit by it (docs/scaling.md, "IsoFLOP ladders"). With --shard, the shards
train the ladder; a run without --shard then trains the held-out run and reports.

Before training it times a few steps of every size and refuses, with its estimate, a preset that
cannot finish within its budget here (--force runs it anyway). Every finished run is appended at
once to DIR/records.jsonl; running the same command again skips the finished runs, so an
interrupted sweep (Ctrl-C, a crash, a time limit) continues where it stopped.

Output folder (--out, default runs/scaling-<preset>): records.jsonl, summary.json,
loss_vs_params.png (log-log, with the fit's band and the held-out size), residuals.png, runs/
(an IsoFLOP preset: isoflop_curves.png, allocation.png, loss_contours.png, frontier.png).

Exit status: 0 when the verdict passes (or, with --shard, when this shard's runs are done), 1 when
it fails, 2 on a usage error or when the sweep would not fit its budget.
See docs/scaling.md for the recipe, the fit and the verdict's rules.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys
import time

from refllm._io import read_jsonl
from refllm._validation import choice_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cpu",
                        help="cpu, h200, cpu-isoflop, h200-isoflop, or a JSON file of Preset "
                             "keys (default: cpu)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change a field of the preset (a Preset key; the value is JSON when "
                             "it parses, e.g. block=llama, seeds=[0]); repeatable. Unless "
                             "name is set too, the name gets -KEY-VALUE appended, so the records "
                             "of the changed ladder go to their own folder")
    parser.add_argument("--out", metavar="DIR",
                        help="output folder (default: runs/scaling-<preset name>)")
    parser.add_argument("--shard", metavar="i/n",
                        help="run only shard i of n (0 <= i < n); default: Slurm's array "
                             "variables when set, else every run")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="parallel training processes (default: the preset's)")
    parser.add_argument("--force", action="store_true",
                        help="run even when the estimate exceeds the preset's budget")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rebuild the report from DIR/records.jsonl")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    slurm = parser.add_argument_group("Slurm, through submitit (pip install \"refllm[slurm]\")")
    slurm.add_argument("--submitit", metavar="PARTITION",
                       help="submit the ladder as one Slurm job array to PARTITION, one task "
                            "per shard, requeued on preemption ('local': processes on this "
                            "machine, no Slurm)")
    slurm.add_argument("--shards", type=int, default=None, metavar="N",
                       help="array tasks for --submitit (default: one per run)")
    slurm.add_argument("--slurm-time", type=int, default=60, metavar="MIN",
                       help="time limit of each task in minutes (default 60)")
    slurm.add_argument("--wait", action="store_true",
                       help="with --submitit: wait for every task, then print the report")


def load_preset(text: str, overrides: list[str] | None = None):
    """The preset named ``text`` (or read from a JSON file), with ``--set`` ``overrides``."""
    from refllm.scaling.sweep.presets import PRESETS

    path = pathlib.Path(text)
    if text in PRESETS:
        d = PRESETS[text].to_dict()
    elif path.suffix == ".json" and path.is_file():
        try:
            d = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"--preset {text!r} is not valid JSON: {exc}") from None
        if not isinstance(d, dict):
            raise ValueError(f"--preset {text!r} must hold one JSON object of Preset keys, got "
                             f"a JSON {type(d).__name__}")
    elif path.suffix == ".json":
        raise ValueError(f"--preset {text!r}: no such file")
    else:
        raise choice_error("--preset", text, sorted(PRESETS), also="or a JSON file (.json)")
    if not overrides:
        return _preset(d, f"--preset {text!r}")
    return _preset(_apply_sets(d, overrides), " ".join(f"--set {s}" for s in overrides))


def _apply_sets(d: dict, overrides: list[str]) -> dict:
    """The preset dict with ``--set KEY=VALUE`` applied; the name gets ``-KEY-VALUE`` appended
    unless one of them sets it."""
    from refllm.train.config import apply_overrides, parse_override

    changed = apply_overrides(d, overrides)
    keys = [parse_override(s)[0] for s in overrides]
    for key in keys:
        if len(key) != 1 or key[0] not in d:
            raise ValueError(f"--set {'.'.join(key)}=...: not a Preset key; keys: {sorted(d)}")
    if ["name"] not in keys:
        def shown(v: object) -> str:
            return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"))
        suffix = "".join(f"-{k[0]}-{shown(changed[k[0]])}" for k in keys)
        changed["name"] = re.sub(r"[^A-Za-z0-9_.-]", "_", str(d["name"]) + suffix)[:100]
    return changed


def _preset(d: dict, where: str):
    from refllm.scaling.sweep.presets import Preset

    d = dict(d)
    for key in ("widths", "seeds", "budgets"):
        if isinstance(d.get(key), list):
            d[key] = tuple(d[key])
    if isinstance(d.get("budget_widths"), list):
        d["budget_widths"] = tuple(tuple(w) if isinstance(w, list) else w
                                   for w in d["budget_widths"])
    try:
        return Preset(**d)
    except TypeError as exc:  # an unknown key, or a value of the wrong type
        raise ValueError(f"{where}: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from refllm.scaling.sweep import runs as sw
    from refllm.scaling.sweep.budget import BudgetError

    start = time.perf_counter()
    preset = load_preset(args.preset, args.set)
    out = pathlib.Path(args.out or f"runs/scaling-{preset.name}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file, not a folder: name a new or existing "
                         f"folder for the records and the report")
    shard = sw.parse_shard(args.shard) if args.shard else sw.shard_from_env()
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    planned = sw.plan(preset)  # once per command: the sweep and the report share it
    if args.submitit is not None:
        return _submit(args, preset, planned, out, start)
    if args.shards is not None or args.wait:
        raise ValueError("--shards and --wait go with --submitit (for one machine's shard, "
                         "use --shard i/n)")
    if not args.report_only:
        where = f", shard {shard[0]}/{shard[1]}" if shard else ""
        print(f"refllm scaling: preset {preset.name!r}{where} into {out}/", flush=True)
        try:
            result = sw.sweep(preset, out, shard=shard, workers=args.workers, force=args.force,
                              progress=not args.no_progress, planned=planned,
                              log=lambda line: print(line, flush=True))
        except BudgetError as exc:
            print(f"refllm scaling: refused: {exc}", file=sys.stderr)
            return 2
        print(f"  trained {len(result.records)} run(s), skipped {len(result.skipped)} finished "
              f"in {result.wall_s:.0f} s", flush=True)
        if preset.isoflop and shard is None:
            _train_holdout(preset, planned, out, args)
    return _report(preset, planned, out, shard, start)


def _train_holdout(preset, planned: list, out: pathlib.Path, args: argparse.Namespace) -> None:
    """An IsoFLOP ladder's held-out run, chosen by the fit of the finished ladder runs."""
    from refllm.scaling.report.isoflop import holdout_run
    from refllm.scaling.sweep import runs as sw

    done = sw.finished(out)
    ladder = [done[r.run_id] for r in planned if r.run_id in done]
    if len(ladder) < len(planned):
        return
    try:
        run = holdout_run(preset, ladder)
    except ValueError as exc:
        print(f"  no held-out run: Approach 2 has no optimum to test ({exc})", flush=True)
        return
    if run.run_id in done:
        return
    n = run.config.model_dict(256)
    print(f"  held-out run: width {run.d_model} at C={preset.holdout_budget:.3g} "
          f"({run.config.tokens:,} tokens), the size nearest the fitted N_opt "
          f"[{n['n_layer']} layers]", flush=True)
    sw.sweep(preset, out, workers=1, force=True, progress=not args.no_progress, planned=[run])


def _submit(args: argparse.Namespace, preset, planned: list, out: pathlib.Path,
            start: float) -> int:
    from refllm.scaling.sweep.submit import submit

    if args.shard is not None or args.report_only:
        raise ValueError("--submitit submits every shard itself: it does not go with --shard "
                         "or --report-only")
    shards = len(planned) if args.shards is None else args.shards
    if shards > len(planned):
        raise ValueError(f"--shards {shards}: preset {preset.name!r} has only {len(planned)} "
                         f"runs, so at most {len(planned)} tasks have work")
    jobs = submit(preset, out, args.submitit, shards=shards, time_min=args.slurm_time,
                  workers=args.workers, force=args.force)
    ids = ", ".join(str(job.job_id) for job in jobs)
    print(f"refllm scaling: preset {preset.name!r}: {shards} task(s) submitted to "
          f"{args.submitit!r} (jobs {ids}); logs in {out / 'submitit'}/", flush=True)
    if not args.wait:
        sets = "".join(f" --set {s}" for s in args.set)
        print(f"when they finish: refllm scaling --preset {args.preset}{sets} --out {out} "
              f"--report-only")
        return 0
    failed = []
    for job in jobs:
        try:
            print(f"  task {job.result()['shard']} done", flush=True)
        except Exception as exc:  # a task's own error, re-raised by submitit with its log
            failed.append(f"{job.job_id}: {str(exc).strip().splitlines()[-1]}")
    if failed:
        print(f"refllm scaling: {len(failed)} task(s) failed (logs in {out / 'submitit'}/): "
              + "; ".join(failed), file=sys.stderr)
        return 1
    return _report(preset, planned, out, None, start)


def _report(preset, planned_runs: list, out: pathlib.Path, shard, start: float) -> int:
    from refllm.scaling.report.build import build_report, require_fields, write_report
    from refllm.scaling.sweep import runs as sw

    planned = {r.run_id for r in planned_runs}
    done = sw.finished(out)
    runs = [rec for rid, rec in done.items() if rid in planned]
    require_fields(out / sw.RECORDS, runs)
    if preset.isoflop and shard and len(runs) == len(planned):
        print(f"\nthe ladder of preset {preset.name!r} is complete in {out / sw.RECORDS}; a run "
              f"without --shard trains its held-out run and reports")
        return 0
    if preset.isoflop and len(runs) == len(planned):
        return _report_isoflop(preset, runs, done, out, start)
    if len(runs) < len(planned):
        print(f"\n{len(runs)} of the {len(planned)} runs of preset {preset.name!r} are in "
              f"{out / sw.RECORDS}; the verdict waits for the rest (other shards, or a rerun).")
        return 0 if shard else 1
    sweeps = [s for s in read_jsonl(out / sw.RECORDS, kind="sweep")
              if s.get("preset") == preset.name]
    report = build_report(runs, verdict_preset=preset.verdict, sweeps=sweeps)
    files = write_report(report, out, runs)
    print("\n" + report.text())
    shown = ", ".join(str(f) for f in [out / sw.RECORDS, *files])
    print(f"\nresults: {shown}\n(wall time of this command: {time.perf_counter() - start:.0f} s)")
    return 0 if report.passed else 1


def _report_isoflop(preset, ladder: list[dict], done: dict, out: pathlib.Path,
                    start: float) -> int:
    from refllm.scaling.report.isoflop import (
        build_isoflop_report,
        holdout_run,
        write_isoflop_report,
    )
    from refllm.scaling.sweep import runs as sw

    runs = list(ladder)
    try:
        held = holdout_run(preset, ladder).run_id
    except ValueError:  # no optimum: the report says why and fails
        held = None
    if held in done:
        runs.append(done[held])
    sweeps = [s for s in read_jsonl(out / sw.RECORDS, kind="sweep")
              if s.get("preset") == preset.name]
    report = build_isoflop_report(runs, preset, sweeps=sweeps)
    files = write_isoflop_report(report, out)
    print("\n" + report.text())
    shown = ", ".join(str(f) for f in [out / sw.RECORDS, *files])
    print(f"\nresults: {shown}\n(wall time of this command: {time.perf_counter() - start:.0f} s)")
    return 0 if report.passed else 1
