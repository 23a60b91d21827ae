"""`refllm train`: --help a newcomer can follow, overrides, exit status, resume."""

import json

import pytest

from refllm.cli import main
from refllm.train import TrainConfig, read_records

RUN = {"model": {"n_layer": 1, "n_head": 2, "d_model": 16},
       "data": "markov:vocab=8,seed=0,tokens=20000", "batch_size": 4, "seq_len": 16,
       "max_steps": 4, "warmup_steps": 1, "log_interval": 1, "eval_tokens": 128}


def test_help_explains_the_config_and_the_outputs(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("--config", "--resume", "--set", "records.jsonl", "torchrun", "max_steps"):
        assert text in out


def test_the_example_config_is_the_default_config(capsys):
    assert main(["train", "--print-example-config"]) == 0
    assert TrainConfig.from_dict(json.loads(capsys.readouterr().out)) == TrainConfig()


def test_a_run_from_a_config_with_overrides(tmp_path, capsys):
    (tmp_path / "run.json").write_text(json.dumps(RUN))
    out = tmp_path / "out"
    code = main(["train", "--config", str(tmp_path / "run.json"), "--out", str(out),
                 "--set", "lr=3e-3", "--set", "model.d_model=8", "--no-progress"])
    assert code == 0
    assert "ok: 4 steps" in capsys.readouterr().out
    (record,) = read_records(out / "records.jsonl", kind="run")
    assert record["config"]["lr"] == 3e-3 and record["model_config"]["d_model"] == 8
    assert main(["train", "--config", str(tmp_path / "run.json"), "--out", str(out),
                 "--set", "lr=3e-3", "--set", "model.d_model=8", "--resume",
                 "--no-progress"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--set", "learning_rate=1"], "unknown TrainConfig key"),
    (["--set", "lr=-1"], "lr must lie in"),
    (["--config", "missing.json"], "no such file"),
])
def test_a_usage_error_exits_2_with_the_reason(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err
