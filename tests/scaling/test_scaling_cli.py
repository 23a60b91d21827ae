"""`refllm scaling` end to end on a tiny preset given as a JSON file (Markov data, 5 widths)."""

import json

import pytest

from refllm.cli import main
from refllm.scaling.report import build as rp
from refllm.scaling.sweep import runs as sw
from tests.scaling.tiny_preset import tiny_preset


def _runs(out):
    lines = (out / sw.RECORDS).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "run"]


@pytest.fixture
def quick_estimate(monkeypatch):
    """10 ms a step instead of timing every width (the refusal test below times for real)."""
    from refllm.scaling.sweep import budget

    monkeypatch.setattr(budget, "time_step", lambda config, data, *steps: 0.01)


@pytest.fixture
def preset_file(tmp_path):
    p = tiny_preset(widths=(8, 12, 16, 24, 32), seeds=(0,), n_layer=1, head_width=8)
    d = p.to_dict()
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(d))
    return path, p


def test_the_scaling_command_trains_judges_and_says_where_the_results_are(tmp_path, capsys,
                                                                          preset_file,
                                                                          quick_estimate):
    path, preset = preset_file
    out = tmp_path / "out"
    args = ["scaling", "--preset", str(path), "--out", str(out), "--no-progress"]
    status = main(args)
    text = capsys.readouterr().out
    summary = json.loads((out / rp.SUMMARY).read_text())
    assert status == (0 if summary["verdict"]["passed"] else 1)
    assert "trained 5 run(s), skipped 0" in text and f"results: {out / sw.RECORDS}" in text
    assert "verdict (cpu preset)" in text and "held out" in text
    assert summary["sweeps"][0]["runs"] == 5 and summary["sweeps"][0]["estimate_s"] > 0
    for name in (sw.RECORDS, rp.LOGLOG, rp.RESIDUALS):
        assert (out / name).stat().st_size > 0
    assert main(args) == status  # a rerun trains nothing and reports the same verdict
    assert "trained 0 run(s), skipped 5" in capsys.readouterr().out
    assert main(args + ["--report-only"]) == status
    assert len(_runs(out)) == 5


def test_a_shard_runs_its_share_and_leaves_the_verdict_to_the_full_ladder(tmp_path, capsys,
                                                                          preset_file,
                                                                          quick_estimate):
    path, preset = preset_file
    out = tmp_path / "out"
    assert main(["scaling", "--preset", str(path), "--out", str(out), "--shard", "1/3",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    mine = sw.shard_runs(sw.plan(preset), 1, 3)
    assert f"trained {len(mine)} run(s)" in text and "the verdict waits" in text
    assert {r["run_id"] for r in _runs(out)} == {r.run_id for r in mine}


def test_the_command_refuses_a_preset_over_its_budget_with_status_2(tmp_path, capsys):
    path = tmp_path / "slow.json"
    path.write_text(json.dumps(tiny_preset(widths=(8,), seeds=(0,), budget_s=1e-3).to_dict()))
    status = main(["scaling", "--preset", str(path), "--out", str(tmp_path / "o"),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "refused" in err and "estimated" in err and "--force" in err


@pytest.mark.parametrize("extra, message", [
    (["--preset", "tpu"], "--preset"), (["--shard", "3/3"], "--shard"),
    (["--workers", "0"], "--workers"),
])
def test_usage_errors_exit_with_status_2_and_say_why(tmp_path, capsys, extra, message):
    status = main(["scaling", "--out", str(tmp_path), "--report-only", *extra])
    assert status == 2 and message in capsys.readouterr().err


def test_report_only_without_records_says_so(tmp_path, capsys, preset_file):
    path, _ = preset_file
    assert main(["scaling", "--preset", str(path), "--out", str(tmp_path), "--report-only"]) == 1
    assert "0 of the 5 runs" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    ("[1, 2, 3]", "must hold one JSON object of Preset keys, got a JSON list"),
    ("{oops", "is not valid JSON"),
    ('{"name": "x", "widths": "abc"}', "--preset"),
    ('{"name": "../../escape", "widths": [8], "n_layer": 1, "seq_len": 16, "batch_size": 8, '
     '"tokens": 2560, "base_lr": 0.01, "base_width": 8}', "preset name must be"),
])
def test_a_bad_preset_file_is_a_usage_error_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "p.json"
    path.write_text(content)
    assert main(["scaling", "--preset", str(path), "--out", str(tmp_path / "o"),
                 "--report-only"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_report_only_on_a_run_record_missing_a_field_names_the_run(tmp_path, capsys,
                                                                  preset_file):
    path, preset = preset_file
    rows = [{"kind": "run", "run_id": r.run_id, "seed": 0, "final_val_loss": 2.0}
            for r in sw.plan(preset)]
    (tmp_path / sw.RECORDS).write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["scaling", "--preset", str(path), "--out", str(tmp_path), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert f"run {rows[0]['run_id']!r} lacks ['n_params_non_embedding']" in err


def test_the_command_plans_the_ladder_once(tmp_path, capsys, preset_file, quick_estimate,
                                           monkeypatch):
    path, _ = preset_file
    calls = []
    real = sw.plan
    monkeypatch.setattr(sw, "plan", lambda preset: calls.append(1) or real(preset))
    main(["scaling", "--preset", str(path), "--out", str(tmp_path), "--no-progress"])
    assert len(calls) == 1


def test_out_naming_a_file_is_a_usage_error(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("mine")
    assert main(["scaling", "--out", str(out), "--report-only"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and out.read_text() == "mine"


def test_set_block_llama_trains_the_ladder_on_the_llama_block(tmp_path, capsys, preset_file,
                                                              quick_estimate):
    path, _ = preset_file
    out = tmp_path / "llama"
    status = main(["scaling", "--preset", str(path), "--set", "block=llama", "--set",
                   "seeds=[1]", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert "preset 'tiny-block-llama-seeds-_1_'" in text
    summary = json.loads((out / rp.SUMMARY).read_text())
    assert status == (0 if summary["verdict"]["passed"] else 1)
    runs = _runs(out)
    assert len(runs) == 5 and "trained 5 run(s)" in text and "verdict (cpu preset)" in text
    for run in runs:
        model = run["config"]["model"]
        assert (model["norm"], model["mlp"], model["positions"], model["bias"],
                model["tie_embeddings"]) == ("rmsnorm", "swiglu", "rope", False, False)
        assert run["run_id"].startswith("tiny-block-llama-")


@pytest.mark.parametrize("extra, message", [
    (["--set", "block=gpt3"], "block must be one of"),
    (["--set", "blocks=llama"], "not a Preset key"),
    (["--set", "block"], "--set expects key=value"),
])
def test_a_bad_set_is_a_usage_error_naming_it(tmp_path, capsys, preset_file, extra, message):
    path, _ = preset_file
    assert main(["scaling", "--preset", str(path), "--out", str(tmp_path / "o"),
                 "--report-only", *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_set_changes_a_named_preset_and_its_name():
    from refllm.scaling.cli import load_preset
    from refllm.scaling.sweep.presets import PRESETS

    llama = load_preset("cpu", ["block=llama"])
    assert llama == PRESETS["cpu"].replace(block="llama", name="cpu-block-llama")
    assert load_preset("cpu", ["block=llama", "name=mine"]).name == "mine"
    assert PRESETS["cpu"].train_config(32, 0).model == {  # the GPT-2 ladder's runs unchanged
        "n_layer": 2, "n_head": 2, "d_model": 32, "attention": "fused"}
    model = llama.train_config(32, 0).model
    assert model["norm"] == "rmsnorm" and model["tie_embeddings"] is False
