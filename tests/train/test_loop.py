"""The loop: deterministic, exactly resumable after SIGKILL, stops on divergence, records runs."""

import json
import math
import pathlib
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from refllm.data import load_tokens
from refllm.testing import assert_close
from refllm.train import read_records, train
from refllm.train.loop import RECORDS

CHILD = r"""
import json, pathlib, sys, time
import torch
torch.set_num_threads(1)
import refllm.train.checkpoint as ckpt
from refllm.train import TrainConfig, train
out, hang_at = sys.argv[1], int(sys.argv[2])
real_save = ckpt.save_checkpoint
def save(*args, **kwargs):
    if kwargs["step"] >= hang_at:  # the steps since the last checkpoint are done, unsaved
        pathlib.Path(out, "READY").write_text(str(kwargs["step"]))
        while True:
            time.sleep(1)  # wait for SIGKILL
    return real_save(*args, **kwargs)
ckpt.save_checkpoint = save
train(TrainConfig.from_dict(json.loads(sys.argv[3])), out, progress=False)
"""


def _run(config, out, data, **kwargs):
    return train(config, out, data=data, progress=False, **kwargs)


def test_the_same_seed_gives_bit_identical_losses(tiny_config, markov_data, tmp_path):
    a = _run(tiny_config(), tmp_path / "a", markov_data)
    b = _run(tiny_config(), tmp_path / "b", markov_data)
    assert a.train_losses == b.train_losses and a.val_losses == b.val_losses
    assert len(a.train_losses) == 12 and [s for s, _ in a.val_losses] == [4, 8, 12]
    c = _run(tiny_config(seed=1), tmp_path / "c", markov_data)
    assert c.train_losses != a.train_losses


def test_a_run_killed_at_a_random_step_and_resumed_gives_exactly_the_same_losses(
        tiny_config, markov_data, tmp_path):
    config = tiny_config(max_steps=30, checkpoint_interval=3, eval_interval=5, micro_batch_size=2)
    kill_at = random.Random().randrange(6, 28, 3)  # a checkpoint step; killed after 3 more steps
    out = tmp_path / "killed"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(kill_at),
                              json.dumps(config.to_dict())], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (out / "READY").exists():
        assert child.poll() is None, f"child exited early: {child.stderr.read().decode()}"
        assert time.monotonic() < deadline, "the child never reached the kill point"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    resumed = _run(config, out, markov_data, resume=True)
    whole = _run(config, tmp_path / "whole", markov_data)
    message = f"killed after step {kill_at}"
    assert resumed.train_losses == whole.train_losses, message
    assert resumed.val_losses == whole.val_losses, message
    assert resumed.record["resumes"] == 1
    assert [r["kind"] for r in read_records(out / RECORDS)][-1] == "run"


@pytest.mark.parametrize("changes", [{}, {"checkpoint_final": False}], ids=["checkpoint",
                                                                          "no-checkpoint"])
def test_resuming_a_finished_run_is_refused_and_writes_nothing(tiny_config, markov_data,
                                                               tmp_path, changes):
    first = _run(tiny_config(**changes), tmp_path, markov_data)
    before = (tmp_path / RECORDS).read_bytes()
    message = (rf"out_dir '{tmp_path}' holds a run that already finished \(status 'ok', 12 steps, "
               rf"final validation loss {first.final_val_loss:.4f} nats/token")
    with pytest.raises(ValueError, match=message):
        _run(tiny_config(**changes), tmp_path, markov_data, resume=True)
    assert (tmp_path / RECORDS).read_bytes() == before


def test_a_diverged_run_is_finished_too(tiny_config, markov_data, tmp_path):
    config = tiny_config(lr=50.0, grad_clip=None, warmup_steps=0, max_steps=40, min_lr=50.0,
                         checkpoint_interval=2)
    assert _run(config, tmp_path, markov_data).status == "diverged"
    with pytest.raises(ValueError, match=r"already finished \(status 'diverged'.*loss nan"):
        _run(config, tmp_path, markov_data, resume=True)


def test_force_trains_a_finished_run_again_from_step_0(tiny_config, markov_data, tmp_path):
    first = _run(tiny_config(), tmp_path, markov_data)
    again = _run(tiny_config(), tmp_path, markov_data, resume=True, force=True)
    assert again.train_losses == first.train_losses and again.record["resumes"] == 0
    runs = read_records(tmp_path / RECORDS, kind="run")
    assert len(runs) == 2 and runs[-1]["time"] > runs[0]["time"]
    with pytest.raises(ValueError, match="already finished"):
        _run(tiny_config(), tmp_path, markov_data, resume=True)
    with pytest.raises(ValueError, match=r"this config differs from it.*'lr': \(0.01, 0.003\)"):
        _run(tiny_config(lr=3e-3), tmp_path, markov_data, resume=True, force=True)
    with pytest.raises(ValueError, match=r"force=True \(--force\).*needs resume=True"):
        _run(tiny_config(), tmp_path / "new", markov_data, force=True)


def test_a_forced_rerun_that_is_killed_resumes_from_its_own_checkpoint(
        tiny_config, markov_data, tmp_path, interrupted_run):
    config = tiny_config(checkpoint_interval=4)
    whole = _run(config, tmp_path, markov_data)
    interrupted_run(config, tmp_path, markov_data, step=8, resume=True, force=True)
    resumed = _run(config, tmp_path, markov_data, resume=True)
    assert resumed.record["resumes"] == 1 and resumed.train_losses == whole.train_losses
    assert len(read_records(tmp_path / RECORDS, kind="run")) == 2


def test_a_run_killed_after_its_final_checkpoint_is_evaluated_once(tiny_config, markov_data,
                                                                   tmp_path, interrupted_run):
    config = tiny_config()
    interrupted_run(config, tmp_path, markov_data, step=12)  # before its "run" record
    resumed = _run(config, tmp_path, markov_data, resume=True)
    whole = _run(config, tmp_path / "whole", markov_data)
    assert resumed.val_losses == whole.val_losses and resumed.steps == 12
    assert [r["step"] for r in read_records(tmp_path / RECORDS, kind="eval")] == [4, 8, 12]


def test_an_existing_run_is_not_overwritten_without_resume(tiny_config, markov_data, tmp_path):
    _run(tiny_config(max_steps=2, warmup_steps=0), tmp_path, markov_data)
    with pytest.raises(ValueError, match="already holds a run"):
        _run(tiny_config(max_steps=2, warmup_steps=0), tmp_path, markov_data)


def test_a_diverging_run_stops_early_with_status_diverged(tiny_config, markov_data, tmp_path):
    config = tiny_config(lr=50.0, grad_clip=None, warmup_steps=0, max_steps=40, min_lr=50.0)
    result = _run(config, tmp_path, markov_data)
    assert result.status == "diverged" and result.steps < 40
    assert math.isnan(result.final_val_loss)
    assert read_records(result.records_path, kind="run")[0]["status"] == "diverged"


def test_the_run_record_holds_what_a_report_needs(tiny_config, markov_data, tmp_path):
    result = _run(tiny_config(), tmp_path, markov_data)
    (record,) = read_records(result.records_path, kind="run")
    assert record["corpus"]["sha256"] == markov_data.sha256
    assert record["versions"]["torch"] == torch.__version__
    assert record["n_params"] > record["n_params_non_embedding"] > 0
    assert record["tokens"] == 12 * 4 * 16 == result.tokens
    assert record["flops"] == 3 * record["flops_per_token_forward"] * record["tokens"]
    assert record["final_val_loss"] == result.val_losses[-1][1] == result.final_val_loss
    assert record["config"]["seed"] == 0 and record["status"] == "ok"
    assert [r["step"] for r in read_records(result.records_path, kind="eval")] == [4, 8, 12]


def test_a_batch_larger_than_the_corpus_is_a_clear_error(tiny_config, tmp_path):
    small = load_tokens("markov:vocab=8,seed=0,tokens=400")
    with pytest.raises(ValueError, match="larger than the training split"):
        _run(tiny_config(batch_size=32), tmp_path, small)


def test_the_refllm_and_torch_losses_train_alike(tiny_config, markov_data, tmp_path):
    a = _run(tiny_config(max_steps=5), tmp_path / "a", markov_data)
    b = _run(tiny_config(max_steps=5, loss_impl="refllm"), tmp_path / "b", markov_data)
    assert_close(torch.tensor([x for _, x in a.train_losses]),
                 torch.tensor([x for _, x in b.train_losses]), kind="impl", dtype=torch.float32)


def test_the_reference_and_fused_attention_train_alike(tiny_config, markov_data, tmp_path):
    model = {"n_layer": 1, "n_head": 2, "d_model": 16}
    a = _run(tiny_config(max_steps=5, model={**model, "attention": "fused"}), tmp_path / "a",
             markov_data)
    b = _run(tiny_config(max_steps=5, model={**model, "attention": "reference"}), tmp_path / "b",
             markov_data)
    assert_close(torch.tensor([x for _, x in a.train_losses]),
                 torch.tensor([x for _, x in b.train_losses]), kind="impl", dtype=torch.float32)


def test_out_dir_may_be_a_string(tiny_config, markov_data, tmp_path):
    result = _run(tiny_config(max_steps=1, warmup_steps=0), str(tmp_path / "s"), markov_data)
    assert isinstance(result.records_path, pathlib.Path) and result.records_path.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusals")
@pytest.mark.parametrize("changes, message", [
    ({"device": "cuda"}, "device='cuda' but torch.cuda.is_available"),
])
def test_cuda_only_settings_are_refused_on_the_cpu(tiny_config, markov_data, tmp_path, changes,
                                                   message):
    with pytest.raises(ValueError, match=message):
        _run(tiny_config(**changes), tmp_path, markov_data)


def test_the_progress_bar_shows_loss_and_tokens_per_second(tiny_config, markov_data, tmp_path,
                                                           monkeypatch):
    shown = []
    import refllm.train.progress as progress

    monkeypatch.setattr(progress.Progress, "update",
                        lambda self, step, loss, rate: shown.append((step, loss, rate)))
    result = train(tiny_config(max_steps=4, log_interval=2), tmp_path, data=markov_data)
    assert [s for s, _, _ in shown] == [2, 4]
    assert [x for _, x, _ in shown] == [x for _, x in result.train_losses]
    assert all(rate > 0 for _, _, rate in shown)
