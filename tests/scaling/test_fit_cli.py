"""`refllm fit` on tiny records and CSV files."""

import json

import numpy as np
import pytest

from refllm.cli import main

SIZES = np.geomspace(1e4, 1e6, 6)


def _records(path):
    gen = np.random.default_rng(0)
    lines = [{"kind": "sweep", "preset": "cpu"}]
    for n in SIZES:
        for seed in (0, 1):
            loss = (1.5 + 40 * n**-0.3) * np.exp(0.01 * gen.standard_normal())
            lines.append({"kind": "run", "n_params_non_embedding": n, "n_params": n + 5e3,
                          "tokens": 3e6 * (1 + seed), "flops": 6 * n * 3e6, "seed": seed,
                          "final_val_loss": loss, "status": "ok"})
    lines.append({"kind": "run", "status": "diverged", "final_val_loss": None, "seed": 2})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_fit_prints_the_law_with_intervals_and_writes_json(tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["fit", str(_records(tmp_path / "r.jsonl")), "--bootstrap", "200",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "L(N) = E + A * N^-alpha" in text and "90% CI" in text
    assert "skipped 1 run(s) with status 'diverged'" in text
    data = json.loads(out.read_text())
    assert data["n_points"] == 12 and data["diagnostics"]["clustered_bootstrap"]
    assert 0.1 < data["params"]["alpha"] < 0.6


def test_fit_reads_a_users_csv_and_the_chinchilla_law(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    n, d = np.repeat(SIZES, 3), np.tile([1e8, 1e9, 1e10], 6)
    loss = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
    csv.write_text("N,D,loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(n, d, loss)))
    assert main(["fit", str(csv), "--law", "chinchilla", "--bootstrap", "0"]) == 0
    assert "L(N, D) = E + A / N^alpha + B / D^beta" in capsys.readouterr().out


def test_bad_input_is_a_usage_error_with_the_reason(tmp_path, capsys):
    csv = tmp_path / "bad.csv"
    csv.write_text("N,loss\n1000,2.0\n2000,-1\n4000,1.5\n8000,1.4\n")
    assert main(["fit", str(csv)]) == 2
    assert "non-positive loss" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "missing.jsonl")]) == 2


def test_a_spreadsheets_csv_with_a_byte_order_mark_is_read(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    loss = 1.5 + 40 * SIZES**-0.3
    text = "N,loss\r\n" + "".join(f"{a},{b}\r\n" for a, b in zip(SIZES, loss))
    csv.write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Excel writes "CSV UTF-8"
    assert main(["fit", str(csv), "--bootstrap", "0"]) == 0
    assert "6 runs" in capsys.readouterr().out


def test_equal_losses_are_refused_as_an_undetermined_law(tmp_path, capsys):
    csv = tmp_path / "flat.csv"
    csv.write_text("N,loss\n" + "".join(f"{n},2.5\n" for n in SIZES))
    assert main(["fit", str(csv), "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "undetermined" in err and "R^2" not in err


def test_x_is_refused_for_a_csv_rather_than_ignored(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    csv.write_text("N,loss\n" + "".join(f"{n},{1.5 + 40 * n**-0.3}\n" for n in SIZES))
    assert main(["fit", str(csv), "--x", "total", "--bootstrap", "0"]) == 2
    assert "--x total" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("", "holds no finished run records"),
    ('{"kind": "sweep"}\n', "holds no finished run records"),
    ('{"kind": "run", "status": "diverged"}\n', "1 with status 'diverged'"),
    ("[1, 2, 3]\n", "line 1 is a JSON list, not a record"),
])
def test_records_without_runs_or_with_a_non_record_line_say_what_is_wrong(tmp_path, capsys,
                                                                         text, message):
    path = tmp_path / "r.jsonl"
    path.write_text(text)
    assert main(["fit", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "missing for some runs" not in err


def test_two_records_of_one_run_are_refused_naming_both_lines(tmp_path, capsys):
    path = _records(tmp_path / "r.jsonl")
    lines = path.read_text().splitlines()
    first = json.loads(lines[1])
    lines[1] = json.dumps({**first, "run_id": "x"})
    lines.append(json.dumps({**first, "run_id": "x", "final_val_loss": 9.0}))
    path.write_text("\n".join(lines) + "\n")
    assert main(["fit", str(path)]) == 2
    assert f"on lines 2 and {len(lines)}" in capsys.readouterr().err


def test_predict_prints_the_loss_and_its_interval_where_asked(tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["fit", str(_records(tmp_path / "r.jsonl")), "--bootstrap", "200",
                 "--predict", "N=1e7", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    (row,) = json.loads(out.read_text())["predictions"]
    assert row["N"] == 1e7 and row["interval"][0] < row["loss"] < row["interval"][1]
    assert abs(row["loss"] / (1.5 + 40 * 1e7**-0.3) - 1) < 0.05  # the law the runs follow
    assert f"predicted loss at N=1e+07: {row['loss']:.5g}" in text and "prediction interval" in text


def test_predict_for_the_chinchilla_law_needs_n_and_d(tmp_path, capsys):
    csv = tmp_path / "runs.csv"
    n, d = np.repeat(SIZES, 3), np.tile([1e8, 1e9, 1e10], 6)
    loss = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
    csv.write_text("N,D,loss\n" + "".join(f"{a},{b},{c}\n" for a, b, c in zip(n, d, loss)))
    args = ["fit", str(csv), "--law", "chinchilla", "--bootstrap", "0"]
    assert main(args + ["--predict", "N=1e7,D=1e11"]) == 0
    want = 1.69 + 406.4 / 1e7**0.34 + 410.7 / 1e11**0.28
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("predicted")][0]
    assert abs(float(line.split(": ")[1].split()[0]) / want - 1) < 1e-3
    for bad in ("N=1e7", "N=1e7,D=abc", "C=1e20", "N=-5,D=1e9"):
        assert main(args + ["--predict", bad]) == 2
        assert "--predict" in capsys.readouterr().err
