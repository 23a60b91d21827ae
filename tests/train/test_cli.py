"""`refllm train`: --help a newcomer can follow, overrides, exit status, resume, and a one-line
ValueError (or OSError naming the file) for every bad input."""

import argparse
import json

import pytest

from refllm.cli import main
from refllm.train import TrainConfig, read_records
from refllm.train.cli import add_arguments, run

RUN = {"model": {"n_layer": 1, "n_head": 2, "d_model": 16},
       "data": "markov:vocab=8,seed=0,tokens=20000", "batch_size": 4, "seq_len": 16,
       "max_steps": 4, "warmup_steps": 1, "log_interval": 1, "eval_tokens": 128}


def test_help_explains_the_config_and_the_outputs(capsys):
    assert main(["train", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps the option help
    for text in ("--config", "--resume", "--force", "--set", "records.jsonl", "torchrun",
                 "max_steps", "same thread count and machine"):
        assert text in out
    assert "exactly" not in out  # a resume is bit-identical only under a condition, said there


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
    resume = ["train", "--config", str(tmp_path / "run.json"), "--out", str(out), "--set",
              "lr=3e-3", "--set", "model.d_model=8", "--resume", "--no-progress"]
    assert main(resume) == 2
    assert f"holds a run that already finished (status 'ok', 4 steps, final validation loss " \
        f"{record['final_val_loss']:.4f}" in capsys.readouterr().err
    assert main([*resume, "--force"]) == 0
    assert len(read_records(out / "records.jsonl", kind="run")) == 2


@pytest.mark.parametrize("args, message", [
    (["--set", "learning_rate=1"], "unknown TrainConfig key"),
    (["--set", "lr=-1"], "lr must lie in"),
    (["--config", "missing.json"], "no such file"),
])
def test_a_usage_error_exits_2_with_the_reason(tmp_path, capsys, args, message):
    assert main(["train", "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def _run_cli(*argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(["--no-progress", *argv]))


@pytest.mark.parametrize("argv, message", [
    (["--set", "lr=abc"], r"--set lr=abc: lr must be a real number, got str 'abc'"),
    (["--set", "max_steps=1.5"], r"--set max_steps=1.5: max_steps must be an int, got float 1.5"),
    (["--set", "compile=yes"], r"--set compile=yes: compile must be a bool, got str 'yes'"),
    (["--set", "model.n_layer=x"],
     r"--set model.n_layer=x: model \(GPTConfig\): n_layer must be an int, got str 'x'"),
    (["--set", "lr=3e-4", "--set", "seed=-1"], r"^--set seed=-1: seed must be >= 0, got -1"),
    (["--set", "learning_rate=1"], r"--set learning_rate=1: unknown TrainConfig key\(s\) "
                                   r"\['learning_rate'\]; known keys: \['model'"),
    (["--set", "model.width=8"], r"unknown model \(GPTConfig\) key\(s\) \['width'\]"),
    (["--set", "lr"], "--set expects key=value, got 'lr'"),
    (["--set", "=3"], "--set expects key=value with a key, got '=3'"),
    (["--set", "lr.x=1"], r"--set 'lr.x=1': 'lr' is not a nested mapping"),
    (["--force"], "--force trains a finished run again and needs --resume"),
])
def test_a_bad_override_is_a_value_error_naming_it(tmp_path, argv, message):
    with pytest.raises(ValueError, match=message):
        _run_cli("--out", str(tmp_path / "o"), *argv)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", r"holds a JSON list; expected one JSON object of TrainConfig keys"),
    ('"lr"', r"holds a JSON string; expected one JSON object"),
    ("{lr: 1}", r"is not valid JSON"),
    ('{"lr": "fast"}', r"lr must be a real number, got str 'fast'"),
    ('{"model": {"n_layer": 1, "n_head": 2, "d_model": 15}}',
     r"model \(GPTConfig\): d_model must be divisible by n_head"),
])
def test_a_bad_config_file_is_a_value_error_naming_it(tmp_path, content, message):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(ValueError, match=rf"--config '.*run\.json'.*{message}"):
        _run_cli("--config", str(tmp_path / "run.json"), "--out", str(tmp_path / "o"))


def test_a_config_file_that_is_not_utf8_or_missing_is_a_value_error(tmp_path):
    (tmp_path / "run.json").write_bytes(b'{"lr": "\xff"}')
    with pytest.raises(ValueError, match=r"run\.json' is not UTF-8 text \(byte 8\)"):
        _run_cli("--config", str(tmp_path / "run.json"))
    with pytest.raises(ValueError, match=r"--config '.*missing\.json': no such file"):
        _run_cli("--config", str(tmp_path / "missing.json"))
    with pytest.raises(ValueError, match=r"--config '.*' is a folder, not a JSON file"):
        _run_cli("--config", str(tmp_path))


@pytest.mark.parametrize("key, value, message", [
    ("data", "no/such/corpus", r"data: the corpus 'no/such/corpus' does not exist \(data is "
                               r"'stdlib', 'markov:"),
    ("tokenizer", "no/such/bpe.json", r"tokenizer: 'no/such/bpe\.json' does not exist "
                                      r"\(tokenizer is 'bytes' or the path of a BPE"),
])
def test_a_missing_corpus_or_tokenizer_file_is_named_before_anything_is_made(tmp_path, key,
                                                                             value, message):
    out = tmp_path / "o"
    with pytest.raises(FileNotFoundError, match=message):
        _run_cli("--set", f"{key}={value}", "--out", str(out))
    assert not out.exists()


def test_out_naming_a_file_is_a_value_error(tmp_path):
    (tmp_path / "taken").write_text("notes")
    with pytest.raises(ValueError, match=r"out_dir \(--out\) '.*taken' is a file, not a folder"):
        _run_cli("--set", f"data={RUN['data']}", "--out", str(tmp_path / "taken"))


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for argv in (["--set", "lr=abc"], ["--set", "max_steps=1.5"],
                 ["--out", str(tmp_path / "file")]):
        assert main(["train", "--no-progress", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("refllm: error: ") and err.count("\n") == 1, err


def test_a_torn_last_record_is_repaired_on_resume(tmp_path, capsys, interrupted_run):
    config = {**RUN, "max_steps": 8, "checkpoint_interval": 4, "eval_interval": 2}
    (tmp_path / "run.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    interrupted_run(TrainConfig.from_dict(config), out, None, step=4)  # killed after step 4
    argv = ["train", "--config", str(tmp_path / "run.json"), "--out", str(out), "--no-progress"]
    records = out / "records.jsonl"
    whole = records.read_bytes()
    with open(records, "a") as f:
        f.write('{"kind": "eval", "st')  # a writer killed mid-line
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "repaired" in err and "removed an unfinished last line of 20 bytes" in err
    text = records.read_bytes()
    assert text.startswith(whole) and text.endswith(b"\n")
    lines = text.decode().splitlines()
    assert [json.loads(line)["kind"] for line in lines] == [r["kind"] for r in
                                                            read_records(records)]
    assert [r["step"] for r in read_records(records, kind="eval")] == [2, 4, 6, 8]
    assert read_records(records, kind="run")[0]["resumes"] == 1
