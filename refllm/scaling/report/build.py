"""The report of a sweep, rebuilt from its records alone (never edited by hand).

From the "run" records of ``records.jsonl``: a table of sizes (non-embedding N, the seeds' final
validation losses, their mean and spread = (max - min) / mean), the fit L(N) = E + A N^-alpha
without the largest size and the verdict of `refllm.scaling.report.verdict.power_law_verdict`
(its rules and thresholds live there), a JSON summary and two plots
(`refllm.scaling.report.plots`). Every file is written atomically (`refllm._io`).

>>> rows = size_rows([{"n_params_non_embedding": 100, "d_model": 8, "seed": s, "status": "ok",
...                    "final_val_loss": v, "time_s": 1.0} for s, v in [(0, 2.0), (1, 2.2)]])
>>> rows[0]["mean"], round(rows[0]["spread"], 4)
(2.1, 0.0952)
"""

from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass, field
from typing import Any

from refllm._io import read_jsonl, write_bytes_atomically

SUMMARY, LOGLOG, RESIDUALS = "summary.json", "loss_vs_params.png", "residuals.png"
REQUIRED = ("n_params_non_embedding", "final_val_loss", "seed")


def load_runs(path: str | pathlib.Path) -> list[dict]:
    """The "run" records of a file; a clear error when one lacks a field the report needs."""
    path = pathlib.Path(path)
    if not path.exists():
        raise ValueError(f"records file {str(path)!r} does not exist; run the sweep first")
    runs = read_jsonl(path, kind="run", unique="run_id")
    require_fields(path, runs)
    return runs


def require_fields(path: pathlib.Path, runs: list[dict]) -> None:
    """ValueError naming the first run record that lacks a field the report needs."""
    for i, r in enumerate(runs):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            name = f"run {r['run_id']!r}" if "run_id" in r else f"run record {i}"
            raise ValueError(f"{str(path)!r}: {name} lacks {missing} (each run record needs "
                             f"{list(REQUIRED)})")


def size_rows(runs: list[dict]) -> list[dict]:
    """One row per non-embedding size N (ascending): seeds, losses, mean, std, spread, time."""
    groups: dict[int, list[dict]] = {}
    for r in runs:
        groups.setdefault(int(r["n_params_non_embedding"]), []).append(r)
    rows = []
    for n, rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["seed"])
        losses = [float(r["final_val_loss"]) for r in rs]
        ok = all(r.get("status", "ok") == "ok" and math.isfinite(v) for r, v in zip(rs, losses))
        mean = sum(losses) / len(losses)
        std = math.sqrt(sum((v - mean) ** 2 for v in losses) / max(len(losses) - 1, 1))
        rows.append({"N": n, "d_model": rs[0].get("d_model"), "seeds": [r["seed"] for r in rs],
                     "losses": losses, "mean": mean, "std": std if len(rs) > 1 else 0.0,
                     "spread": (max(losses) - min(losses)) / mean if ok else math.nan,
                     "ok": ok, "time_s": [float(r.get("time_s", math.nan)) for r in rs]})
    return rows


def format_table(rows: list[dict], verdict: Any = None) -> str:
    """The size table; with a verdict, the fitted loss and its error at every size."""
    head = f"  {'d_model':>7} {'N (non-emb)':>12} {'seeds':>5} {'mean loss':>10} {'spread':>7}"
    head += f" {'fit':>8} {'fit err':>8}" if verdict is not None and verdict.fit else ""
    lines = [head + f" {'time/run':>9}"]
    for i, r in enumerate(rows):
        line = (f"  {r['d_model'] or '-':>7} {r['N']:>12,} {len(r['seeds']):>5} "
                f"{r['mean']:>10.4f} {100 * r['spread']:>6.2f}%")
        if verdict is not None and verdict.fit:
            pred = float(verdict.fit.predict([r["N"]])[0])
            mark = "*" if i == len(rows) - 1 else " "
            line += f" {pred:>8.4f} {100 * (pred / r['mean'] - 1):>+7.2f}%{mark}"
        mean_t = sum(r["time_s"]) / len(r["time_s"])
        lines.append(line + f" {mean_t:>8.1f}s")
    if verdict is not None and verdict.fit:
        lines.append("  * held out: not used by the fit")
    return "\n".join(lines)


@dataclass
class Report:
    rows: list[dict]
    verdict: Any                       # report.verdict.Verdict, or None (too few sizes)
    summary: dict[str, Any]
    files: list[pathlib.Path] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.verdict is not None and self.verdict.passed)

    def text(self) -> str:
        parts = [format_table(self.rows, self.verdict)]
        if self.verdict is not None:
            fit = self.verdict.fit
            parts += [fit.table() if fit is not None else "", self.verdict.table()]
        else:
            parts.append(self.summary["verdict_note"])
        return "\n\n".join(p for p in parts if p)


def build_report(runs: list[dict], *, verdict_preset: str = "cpu", bootstrap: int = 1000,
                 rng: int = 0, sweeps: list[dict] | None = None) -> Report:
    """Rows, verdict and JSON summary from run records (no files written); ``sweeps``: the
    "sweep" records (estimates and load at each start), copied into the summary."""
    from refllm.scaling.report.verdict import power_law_verdict

    if not runs:
        raise ValueError("no run records to report on")
    rows = size_rows(runs)
    verdict, note = None, ""
    if len(rows) >= 5:
        verdict = power_law_verdict(
            [r["n_params_non_embedding"] for r in runs],
            [float(r["final_val_loss"]) for r in runs], [r["seed"] for r in runs],
            diverged=[r.get("status", "ok") != "ok" for r in runs], preset=verdict_preset,
            bootstrap=bootstrap, rng=rng)
    else:
        note = (f"no verdict: it needs >= 5 sizes (4 fitted, 1 held out), the records hold "
                f"{len(rows)}")
    summary = _summary(runs, rows, verdict, note)
    summary["sweeps"] = _jsonable([{k: v for k, v in s.items() if k != "preset_config"}
                                   for s in sweeps or []])
    return Report(rows, verdict, summary)


def _summary(runs: list[dict], rows: list[dict], verdict: Any, note: str) -> dict[str, Any]:
    first = runs[0]
    corpora = sorted({str((r.get("corpus") or {}).get("sha256")) for r in runs})
    starts = [r["time"] - r.get("time_s", 0.0) for r in runs if "time" in r]
    ends = [r["time"] for r in runs if "time" in r]
    loads = [r["loadavg"][0] for r in runs if r.get("loadavg")]
    return _jsonable({
        "rows": rows, "verdict": verdict.to_dict() if verdict is not None else None,
        "verdict_note": note, "n_runs": len(runs), "corpus_sha256": corpora,
        "mixed_corpora": len(corpora) > 1, "presets": sorted({str(r.get("preset")) for r in runs}),
        "hardware": first.get("hardware"), "versions": first.get("versions"),
        "platform": first.get("platform"),
        "train_time_s": sum(float(r.get("time_s", 0.0)) for r in runs),
        "wall_s_first_start_to_last_end": (max(ends) - min(starts)) if ends else None,
        "loadavg_1min_at_run_ends": [min(loads), max(loads)] if loads else None,
    })


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=float, allow_nan=True))


def write_report(report: Report, out: str | pathlib.Path, runs: list[dict]) -> list[pathlib.Path]:
    """summary.json, and the two plots when there is a verdict with a fit; returns the paths."""
    from refllm.scaling.report import plots

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.summary, indent=2, allow_nan=True) + "\n"
    write_bytes_atomically(out / SUMMARY, text.encode())
    files = [out / SUMMARY]
    if report.verdict is not None and report.verdict.fit is not None:
        rows, verdict = report.rows, report.verdict
        write_bytes_atomically(out / LOGLOG, plots.loss_vs_params(rows, runs, verdict))
        write_bytes_atomically(out / RESIDUALS, plots.residuals(rows, runs, verdict))
        files += [out / LOGLOG, out / RESIDUALS]
    report.files = files
    return files


def report_from_records(path: str | pathlib.Path, out: str | pathlib.Path | None = None, *,
                        verdict_preset: str = "cpu", bootstrap: int = 1000) -> Report:
    """Read ``path``, judge, write the summary and plots beside it (or into ``out``)."""
    runs = load_runs(path)
    report = build_report(runs, verdict_preset=verdict_preset, bootstrap=bootstrap,
                          sweeps=read_jsonl(path, kind="sweep"))
    write_report(report, pathlib.Path(path).parent if out is None else out, runs)
    return report
