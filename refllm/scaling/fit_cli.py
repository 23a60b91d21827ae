"""Fit a scaling law to your own runs: records from `refllm scaling` (JSON lines) or a CSV.

    refllm fit runs/records.jsonl                     # L(N) = E + A N^-alpha, N non-embedding
    refllm fit runs/records.jsonl --x total           # N counts the embeddings too
    refllm fit runs/records.jsonl --law chinchilla    # L(N, D) = E + A/N^alpha + B/D^beta
    refllm fit my_runs.csv --law d --json fit.json    # a CSV with columns N, D, loss, seed
    refllm fit runs.csv --law chinchilla --predict N=7e10,D=1.4e12   # loss there, with its PI
    refllm fit runs.csv --exclude "tokens_per_param<5" --exclude "N<1e6"   # stated exclusions

JSONL: one run per line; lines whose "kind" is not "run" are skipped (a line without "kind" is a
run), as are runs whose "status" is not one of ok/done/finished/completed (say "diverged").
Fields read: n_params_non_embedding or n_params (--x), tokens (D), flops (C), seed,
final_val_loss. CSV: a header row naming N and loss, optionally D, C and seed (any case).
Points of one size with several seeds are resampled together in the bootstrap.
--exclude FIELD<VALUE (or <=, >, >=; fields N, D, C, loss, tokens_per_param) leaves out the runs
for which it holds; each rule's count is printed and written to --json.

Prints the fitted law with bootstrap percentile intervals and diagnostics (R^2 of log L, which
parameters sit on a bound). Methods and formulas: docs/scaling.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import pathlib
from typing import Any

from refllm._io import read_jsonl, write_text_atomically
from refllm.scaling import exclusions

LAWS = ("n", "d", "c", "chinchilla")
OK_STATUS = ("ok", "done", "finished", "completed")
X_FIELD = {"non_embedding": "n_params_non_embedding", "total": "n_params"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="records (.jsonl) or a CSV file")
    parser.add_argument("--law", choices=LAWS, default="n",
                        help="n, d or c: L = E + A x^-alpha in that variable; chinchilla: L(N, D)")
    parser.add_argument("--x", choices=sorted(X_FIELD), default=None,
                        help="which parameter count is N (records only; default non_embedding)")
    parser.add_argument("--pure", action="store_true", help="fit L = A x^-alpha (no E)")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="replicates (default 1000; chinchilla 200; 0: no intervals)")
    parser.add_argument("--level", type=float, default=0.9, help="interval level")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--json", type=pathlib.Path, default=None, help="write the fit here")
    parser.add_argument("--exclude", action="append", default=[], metavar="FIELD<VALUE",
                        help="leave out the runs for which this holds (fields N, D, C, loss, "
                             "tokens_per_param; < <= > >=); repeatable, applied in order, "
                             "each one's count printed")
    parser.add_argument("--predict", action="append", default=[], metavar="N=...[,D=...]",
                        help="print the fitted loss at these sizes with its prediction interval "
                             "(for one new run, at --level); the law's variables: N, D or C, "
                             "N and D for chinchilla; repeatable")


def read_records(path: pathlib.Path, x_field: str) -> tuple[dict[str, list[Any]], list[str]]:
    """Columns N, D, C, seed, loss from run records; and notes on what was skipped.

    Read by `refllm._io.read_jsonl`: every line a JSON object, two different records of one
    run_id an error naming both lines, a torn last line skipped (a hand-written file's last line
    without a newline is read)."""
    cols: dict[str, list[Any]] = {k: [] for k in ("N", "D", "C", "seed", "loss")}
    skipped: dict[str, int] = {}
    for rec in read_jsonl(path, unique="run_id"):
        if rec.get("kind", "run") != "run":
            continue
        status = str(rec.get("status", "ok"))
        if status not in OK_STATUS:
            skipped[status] = skipped.get(status, 0) + 1
            continue
        for key, field in (("N", x_field), ("D", "tokens"), ("C", "flops"), ("seed", "seed"),
                           ("loss", "final_val_loss")):
            cols[key].append(rec.get(field))
    if not cols["loss"]:
        why = f" ({', '.join(f'{k} with status {s!r}' for s, k in sorted(skipped.items()))})"
        raise ValueError(f"path: {str(path)!r} holds no finished run records"
                         f"{why if skipped else ''}; a run record is a JSON object with "
                         f"final_val_loss and {x_field}")
    notes = [f"skipped {k} run(s) with status {s!r}" for s, k in sorted(skipped.items())]
    return cols, notes


def read_csv(path: pathlib.Path) -> dict[str, list[Any]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: a spreadsheet's BOM
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path}: no rows (want a header naming N and loss)")
    names = {k.strip().lower(): k for k in rows[0] if k is not None}
    if "n" not in names or "loss" not in names:
        raise ValueError(f"{path}: the header must name N and loss, got {list(rows[0])}")
    return {k: [r[names[k.lower()]] if k.lower() in names else None for r in rows]
            for k in ("N", "D", "C", "seed", "loss")}


def _numbers(cols: dict[str, list[Any]], key: str, path: pathlib.Path) -> list[float]:
    values = cols[key]
    if not values or any(v is None or v == "" for v in values):
        raise ValueError(f"{path}: {key} is missing for some runs (needed by this law)")
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {key} must be numbers ({exc})") from None


def _write_json(path: pathlib.Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def parse_predict(text: str, law: str) -> dict[str, float]:
    """``"N=1e9,D=2e10"`` -> {"N": 1e9, "D": 2e10}, checked against the law's variables."""
    want = ("N", "D") if law == "chinchilla" else (law.upper(),)
    out: dict[str, float] = {}
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().upper()
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not eq or key not in want or not (math.isfinite(number) and number > 0):
            raise ValueError(f"--predict {text!r}: write {','.join(k + '=SIZE' for k in want)} "
                             f"with sizes > 0 (the variables of --law {law})")
        out[key] = number
    missing = [k for k in want if k not in out]
    if missing:
        raise ValueError(f"--predict {text!r}: {missing} missing (--law {law} needs "
                         f"{list(want)})")
    return out


def predictions(fit: Any, points: list[dict[str, float]]) -> list[dict[str, Any]]:
    """The fitted loss at each point, with the prediction interval when the fit was bootstrapped."""
    out = []
    for point in points:
        x = point.get("N", point.get("D", point.get("C")))
        d = point.get("D") if fit.law == "chinchilla" else None
        row: dict[str, Any] = {**point, "loss": float(fit.predict([x], d=None if d is None
                                                                 else [d])[0])}
        if fit.replicates is not None:
            lo, hi = fit.prediction_interval([x], d=None if d is None else [d])
            row["interval"] = [float(lo[0]), float(hi[0])]
        out.append(row)
    return out


def run(args: argparse.Namespace) -> int:
    from refllm.scaling.fit import fit_chinchilla, fit_power_law

    path = pathlib.Path(args.path)
    if not path.is_file():
        raise ValueError(f"path: no such file {str(path)!r}")
    if path.suffix.lower() == ".csv":
        if args.x is not None:
            raise ValueError(f"--x {args.x}: a CSV names its own N column; --x chooses the "
                             f"parameter count of run records (.jsonl) only")
        cols, notes = read_csv(path), list[str]()
    else:
        cols, notes = read_records(path, X_FIELD[args.x or "non_embedding"])
    rules = [exclusions.parse_rule(text) for text in args.exclude]  # refused before reading on
    excluded: list[dict[str, Any]] = []
    if rules:
        rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
        rows, excluded = exclusions.apply(rules, rows)
        cols = {k: [row[k] for row in rows] for k in cols}
    loss = _numbers(cols, "loss", path)
    bad = sum(not (math.isfinite(v) and v > 0) for v in loss)
    if bad:
        raise ValueError(f"{path}: {bad} run(s) have a non-finite or non-positive loss; mark "
                         f"them status 'diverged' or remove them")
    seeds = cols["seed"] if all(s not in (None, "") for s in cols["seed"]) else None
    if seeds is not None and not seeds:
        seeds = None
    points = [parse_predict(text, args.law) for text in args.predict]  # refused before fitting
    opts = dict(seeds=seeds, level=args.level, rng=args.seed)
    if args.law == "chinchilla":
        fit = fit_chinchilla(_numbers(cols, "N", path), _numbers(cols, "D", path), loss,
                             bootstrap=200 if args.bootstrap is None else args.bootstrap, **opts)
    else:
        var = args.law.upper()
        fit = fit_power_law(_numbers(cols, var, path), loss, saturating=not args.pure,
                            bootstrap=1000 if args.bootstrap is None else args.bootstrap,
                            variable=var, **opts)
    for note in notes:
        print(f"note: {note}")
    for entry in excluded:
        print(f"excluded {entry['dropped']} run(s) by {entry['rule']}")
    print(f"{path}: {fit.n_points} runs")
    print(fit.table())
    for warning in fit.warnings():
        print(f"warning: {warning}")
    if not fit.warnings() and any(fit.on_bound.values()):
        print("note: a parameter on its bound (" + ", ".join(k for k, v in fit.on_bound.items()
                                                            if v) + "): read its CI with care")
    rows = predictions(fit, points)
    for row in rows:
        where = ", ".join(f"{k}={row[k]:.4g}" for k in ("N", "D", "C") if k in row)
        band = (f"  ({fit.level:.0%} prediction interval for one run: [{row['interval'][0]:.5g}, "
                f"{row['interval'][1]:.5g}])" if "interval" in row
                else "  (no interval: --bootstrap 0)")
        print(f"predicted loss at {where}: {row['loss']:.5g}{band}")
    if args.json is not None:
        extra = {"predictions": rows} if rows else {}
        _write_json(args.json, {**fit.to_dict(), **extra, "exclusions": excluded})
        print(f"wrote {args.json}")
    return 0
