"""The scaling benchmark: a whole preset (sweep, fit, verdict), timed once, the verdict asserted.

THE LONG ONE of ``pytest bench --benchmark-only``: the ``cpu`` preset trains 12 runs (about 3.5
minutes on 2 idle cores, 2-4x that on a loaded machine; the preset's budget check is overridden,
the estimate and the load are recorded instead). Skip it with ``-k 'not scaling'``. The ``h200``
preset is marked ``gpu`` and skipped without CUDA (``pytest bench -m gpu --benchmark-only``).

extra_info: the verdict's rules, wall seconds per size (mean over seeds), the pre-run estimate,
the load average before and after, hardware. The records and plots go to a temporary folder, or to
``REFLLM_SCALING_BENCH_OUT`` when set (to commit them as results).
"""

from __future__ import annotations

import os
import pathlib

import pytest
import torch

from refllm.scaling.report.build import build_report, write_report
from refllm.scaling.sweep.presets import PRESETS
from refllm.scaling.sweep.runs import finished, plan, sweep


def _run_preset(name: str, out: pathlib.Path) -> dict:
    preset = PRESETS[name]
    load_before = os.getloadavg()
    result = sweep(preset, out, force=True, progress=False)
    planned = {r.run_id for r in plan(preset)}
    runs = [rec for rid, rec in finished(out).items() if rid in planned]
    report = build_report(runs, verdict_preset=preset.verdict)
    write_report(report, out, runs)
    return {"report": report, "result": result, "load_before": load_before,
            "load_after": os.getloadavg()}


def _bench(benchmark, name: str, tmp_path: pathlib.Path) -> None:
    out = pathlib.Path(os.environ.get("REFLLM_SCALING_BENCH_OUT", tmp_path / f"scaling-{name}"))
    benchmark.group = f"scaling-{name}"
    box = benchmark.pedantic(_run_preset, args=(name, out), rounds=1, iterations=1)
    report, result = box["report"], box["result"]
    per_size = {str(r["d_model"]): sum(r["time_s"]) / len(r["time_s"]) for r in report.rows}
    est = result.estimate
    benchmark.extra_info.update({
        "verdict": report.verdict.to_dict() if report.verdict is not None else None,
        "wall_s_per_size": per_size, "sweep_wall_s": result.wall_s,
        "estimate_wall_s": None if est is None else est.wall_s,
        "budget_s": PRESETS[name].budget_s, "loadavg_before": box["load_before"],
        "loadavg_after": box["load_after"], "hardware": report.summary.get("hardware"),
        "out": str(out)})
    assert report.passed, report.text()


def test_scaling_cpu_preset_follows_a_power_law(benchmark, tmp_path):
    _bench(benchmark, "cpu", tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the h200 preset needs a CUDA device")
def test_scaling_h200_preset_follows_a_power_law(benchmark, tmp_path):
    _bench(benchmark, "h200", tmp_path)
