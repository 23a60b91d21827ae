"""The whole GPU proof in one command: environment, GPU tests, GPU benchmark rows, the h200 ladder.

    bash bench/gpu/run.sh [--out runs/gpu] [--dry-run]

Stages run in order, each in its own process with its own time limit, so a stage that hangs or
fails never stops the next one (a lent H200 comes for about 15 minutes of device time in all,
start-up included; the stages sum to at most `sum(LIMITS_S)` = 9 minutes):

1. ``env``: torch, CUDA, the GPU's name, memory and clocks (``nvidia-smi``);
2. ``gpu-tests``: every test marked ``gpu`` (``pytest -m gpu``: the oracle on each SDPA backend in
   fp16/bf16, fused CUDA optimizers, the KV cache, a bf16 training step);
3. ``bench``: the GPU benchmark rows (training tokens/s against a plain loop, same process);
4. ``scaling``: ``refllm scaling`` with the h200 preset's ladder and recipe, its budget the
   stage's window; when its up-front estimate does not fit, the preset refuses and a smaller
   fallback ladder (`FALLBACK`) runs instead, and the summary says so.

``--dry-run`` runs the same stages on the CPU with micro sizes (the tests are collected, not run:
they need CUDA; one benchmark row on the CPU; a tiny ladder with the h200 recipe's machinery,
whose stage passes when it reaches a verdict, whatever the verdict says), in under 3 minutes;
CI runs it (tests/test_gpu_script.py), so the script cannot rot between the rare sessions that
have a GPU.

At most 8 files land in ``--out``: summary.json (every stage: passed / failed / skipped /
timed out, seconds, key figures), run.log (every stage's output), bench.json (the ratios table),
and the ladder's records.jsonl, scaling-summary.json, loss_vs_params.png and residuals.png.
docs/gpu.md says what the run proves and how to read a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIMITS_S = {"env": 30, "gpu-tests": 150, "bench": 90, "scaling": 270}
DRY_LIMITS_S = {"env": 30, "gpu-tests": 60, "bench": 90, "scaling": 120}
COPIED = ("records.jsonl", "loss_vs_params.png", "residuals.png")

ENV_SNIPPET = r"""
import json, platform, subprocess, torch
info = {"python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, memory_gib=round(p.total_memory / 2**30, 1),
                capability=f"{p.major}.{p.minor}", devices=torch.cuda.device_count())
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=clocks.sm,clocks.max.sm,clocks.mem,"
                            "power.limit,driver_version", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=10)
        info["nvidia_smi"] = q.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["nvidia_smi"] = f"unavailable: {exc}"
print(json.dumps(info))
"""


def h200_ladder(window_s: float) -> dict[str, Any]:
    """The h200 preset, its budget the stage's window (the preset refuses what cannot fit)."""
    from refllm.scaling.sweep.presets import PRESETS

    return {**PRESETS["h200"].to_dict(), "name": "h200", "budget_s": window_s}


def fallback_ladder(window_s: float) -> dict[str, Any]:
    """Five sizes of the h200 ladder and half its tokens: about a third of its compute."""
    d = h200_ladder(window_s)
    return {**d, "name": "h200-fallback", "widths": [64, 96, 128, 192, 256],
            "tokens": d["tokens"] // 2}


def dry_ladder(window_s: float) -> dict[str, Any]:
    """The h200 recipe's machinery at micro sizes on the CPU: the preset file, the estimate, the
    sweep in its worker processes, the fit, the verdict, the plots."""
    d = h200_ladder(window_s)
    return {**d, "name": "h200-dry-run", "widths": [8, 12, 16, 24, 32, 48], "n_layer": 1,
            "seq_len": 16, "batch_size": 8, "tokens": 16 * 8 * 60, "head_width": 8, "min_heads": 1,
            "data": "markov:vocab=8,seed=0,tokens=20000", "max_bytes": None, "eval_tokens": 256,
            "device": "cpu", "autocast": "none", "workers": 2, "seeds": [0], "verdict": "cpu"}


def _own_environment() -> dict[str, str]:
    """This process's environment without a calling pytest's own variables: a stage started from
    inside a pytest-xdist worker (the CI rehearsal) would otherwise inherit PYTEST_XDIST_WORKER,
    and pytest-benchmark, taking itself for an xdist worker, disables benchmarks and refuses
    --benchmark-only (exit 4)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}


class Runner:
    def __init__(self, out: pathlib.Path, dry_run: bool) -> None:
        self.out, self.dry_run = out, dry_run
        self.limits = DRY_LIMITS_S if dry_run else LIMITS_S
        self.log = open(out / "run.log", "a", encoding="utf-8")
        self.stages: list[dict[str, Any]] = []

    def command(self, name: str, argv: list[str], *, limit_s: float | None = None,
                env: dict[str, str] | None = None) -> tuple[int | None, str, float]:
        """Run ``argv``; (exit status or None when it ran past its limit, output, seconds)."""
        limit = self.limits[name] if limit_s is None else limit_s
        self.log.write(f"\n===== {name}: {' '.join(argv)} (limit {limit:.0f} s)\n")
        self.log.flush()
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=limit,
                                  env={**_own_environment(), **(env or {})})
            rc, text = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as exc:
            rc = None
            text = _text(exc.stdout) + _text(exc.stderr) + f"\n[ran past its {limit:.0f} s]\n"
        took = time.perf_counter() - start
        self.log.write(text)
        self.log.flush()
        return rc, text, took

    def record(self, name: str, rc: int | None, took: float, **figures: Any) -> dict[str, Any]:
        status = "timed out" if rc is None else "passed" if rc == 0 else "failed"
        stage = {"stage": name, "status": figures.pop("status", status), "exit": rc,
                 "seconds": round(took, 1), **figures}
        self.stages.append(stage)
        print(f"  {name:<10} {stage['status']:<10} {took:6.1f} s", flush=True)
        return stage

    # ------------------------------------------------------------------ stages
    def env(self) -> None:
        rc, text, took = self.command("env", [sys.executable, "-c", ENV_SNIPPET])
        info: dict[str, Any] = {}
        if rc == 0:
            info = json.loads(text.strip().splitlines()[-1])
        self.record("env", rc, took, **info)

    def gpu_tests(self) -> None:
        argv = [sys.executable, "-m", "pytest", "-m", "gpu", "tests", "-q", "-p",
                "no:cacheprovider", "-o", "addopts="]
        if self.dry_run:
            argv.append("--collect-only")  # they need CUDA: collected, so none has rotted
        rc, text, took = self.command("gpu-tests", argv)
        counts = _pytest_counts(text)
        status = None
        if self.dry_run and rc == 0:
            status = "passed"
        elif rc == 5:  # pytest: no test ran
            status = "skipped"
        self.record("gpu-tests", rc, took, **counts, **({"status": status} if status else {}))

    def bench(self) -> None:
        ratios = self.out / "bench.json"
        if self.dry_run:
            select = ["bench/test_train_bench.py", "-k", "throughput and cpu and nanogpt",
                      "--benchmark-min-rounds=1", "--benchmark-max-time=0.01",
                      "--benchmark-warmup=off"]
        else:
            select = ["bench/test_train_bench.py", "bench/test_attention_bench.py", "-k",
                      "cuda"]
        argv = [sys.executable, "-m", "pytest", *select, "--benchmark-only", "-q", "-p",
                "no:cacheprovider", "-o", "addopts="]
        rc, text, took = self.command("bench", argv, env={"REFLLM_BENCH_RATIOS": str(ratios)})
        rows = json.loads(ratios.read_text())["rows"] if ratios.exists() else []
        self.record("bench", rc, took, rows=len(rows), **_pytest_counts(text))

    def scaling(self) -> None:
        window = self.limits["scaling"]
        work = pathlib.Path(tempfile.mkdtemp(prefix="refllm-gpu-scaling-"))
        try:
            ladders = [dry_ladder(window)] if self.dry_run else [
                h200_ladder(window - 30), fallback_ladder(window - 30)]
            start, used, rc, text = time.perf_counter(), None, None, ""
            for ladder in ladders:
                left = window - (time.perf_counter() - start)
                if left < 20:
                    break
                preset = work / f"{ladder['name']}.json"
                preset.write_text(json.dumps(ladder))
                out = work / ladder["name"]
                rc, text, _ = self.command("scaling", [
                    sys.executable, "-m", "refllm", "scaling", "--preset", str(preset),
                    "--out", str(out), "--no-progress"], limit_s=left)
                used = ladder["name"]
                if not (rc == 2 and "refused" in text):  # refused by its estimate: next ladder
                    break
            took = time.perf_counter() - start
            figures: dict[str, Any] = {"ladder": used,
                                       "fallback": used not in ("h200", "h200-dry-run")}
            summary = work / str(used) / "summary.json"
            if summary.exists():
                data = json.loads(summary.read_text())
                verdict = data.get("verdict") or {}
                figures.update(verdict_passed=verdict.get("passed"),
                               rules={r["name"]: r["passed"] for r in verdict.get("rules", [])})
                shutil.copyfile(summary, self.out / "scaling-summary.json")
                for name in COPIED:
                    if (work / str(used) / name).exists():
                        shutil.copyfile(work / str(used) / name, self.out / name)
            if self.dry_run and rc in (0, 1) and figures.get("verdict_passed") is not None:
                # micro sizes judge nothing: the stage proves the machinery ran to a verdict
                figures["status"] = "passed"
            self.record("scaling", rc, took, **figures)
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def write_summary(self, wall_s: float) -> pathlib.Path:
        summary = {"dry_run": self.dry_run, "wall_s": round(wall_s, 1),
                   "command": " ".join(["bash bench/gpu/run.sh", *sys.argv[1:]]),
                   "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "passed": all(s["status"] in ("passed", "skipped") for s in self.stages)
                   and not any(s["status"] == "skipped" for s in self.stages
                               if not self.dry_run and s["stage"] == "gpu-tests"),
                   "stages": self.stages}
        path = self.out / "summary.json"
        path.write_text(json.dumps(summary, indent=2) + "\n")
        return path


def _text(x: Any) -> str:
    if x is None:
        return ""
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)


def _pytest_counts(text: str) -> dict[str, int]:
    """passed / failed / skipped / error / tests collected, from pytest's last summary line."""
    import re

    counts: dict[str, int] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    for line in reversed(lines[-3:]):
        for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|tests? "
                                  r"collected)", line):
            counts[word.split()[0].rstrip("s") if "collected" in word else word] = int(n)
        if counts:
            break
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/gpu", help="results folder (default runs/gpu)")
    parser.add_argument("--dry-run", action="store_true",
                        help="the same stages on the CPU at micro sizes (what CI runs)")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"run.py: error: --out {str(out)!r} is a file", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    runner = Runner(out, args.dry_run)
    print(f"refllm GPU run{' (dry run, CPU)' if args.dry_run else ''} into {out}/", flush=True)
    for stage in (runner.env, runner.gpu_tests, runner.bench, runner.scaling):
        try:
            stage()
        except Exception as exc:  # a stage's own failure never stops the next one
            runner.log.write(f"\n[stage raised {type(exc).__name__}: {exc}]\n")
            runner.record(stage.__name__.replace("_", "-"), 1, 0.0,
                          error=f"{type(exc).__name__}: {exc}")
    path = runner.write_summary(time.perf_counter() - start)
    runner.log.close()
    data = json.loads(path.read_text())
    print(f"{'all stages passed' if data['passed'] else 'SOME STAGES DID NOT PASS'}: {path}")
    return 0 if data["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
