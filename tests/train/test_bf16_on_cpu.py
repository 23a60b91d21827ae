"""bf16 autocast on the CPU: the GPU recipe's code path (autocast, fused SDPA, the h200 preset's
lr rule and schedule) runs here and in CI, shrunk."""

import math

import pytest
import torch

from refllm.train import train
from refllm.train.build import autocast_context


def test_bf16_autocast_trains_on_the_cpu_close_to_float32(tiny_config, markov_data, tmp_path):
    kw = dict(max_steps=20, eval_interval=0)
    fp32 = train(tiny_config(autocast="none", **kw), tmp_path / "a", data=markov_data,
                 progress=False)
    bf16 = train(tiny_config(autocast="bf16", **kw), tmp_path / "b", data=markov_data,
                 progress=False)
    assert bf16.record["config"]["autocast"] == "bf16"
    losses = [x for _, x in bf16.train_losses]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    # bf16 keeps 8 bits of mantissa: the two runs part by rounding, not by a different recipe
    assert bf16.final_val_loss == pytest.approx(fp32.final_val_loss, rel=0.05)
    assert bf16.train_losses != fp32.train_losses  # autocast really changed the arithmetic


def test_inside_the_cpu_autocast_matrix_multiplies_run_in_bf16():
    context = autocast_context("bf16", torch.device("cpu"))
    a = torch.randn(4, 4)
    with context():
        assert (a @ a).dtype == torch.bfloat16
        q = torch.randn(1, 2, 3, 8)
        assert torch.nn.functional.scaled_dot_product_attention(q, q, q).dtype == torch.bfloat16
    assert autocast_context("auto", torch.device("cpu")) is None  # auto: float32 on the CPU


def test_autocast_on_a_device_without_bf16_autocast_is_refused():
    with pytest.raises(ValueError, match="autocast='bf16' needs a device of type cuda or cpu"):
        autocast_context("bf16", torch.device("meta"))


def test_the_h200_recipe_shrunk_runs_a_ladder_on_the_cpu(tmp_path, monkeypatch):
    from refllm.scaling.report.build import build_report
    from refllm.scaling.sweep import budget
    from refllm.scaling.sweep import runs as sw
    from refllm.scaling.sweep.presets import PRESETS

    monkeypatch.setattr(budget, "time_step", lambda config, data, *steps: 0.01)
    h200 = PRESETS["h200"]
    small = h200.replace(name="h200-on-cpu", device="cpu", widths=(8, 12, 16, 20, 24, 32),
                         seq_len=16, batch_size=4, tokens=16 * 4 * 8, eval_tokens=128,
                         head_width=8, seeds=(0,), workers=1,
                         data="markov:vocab=8,seed=0,tokens=20000")
    assert (small.autocast, small.attention, small.lr(32)) == ("bf16", "fused", h200.lr(32))
    result = sw.sweep(small, tmp_path, progress=False)
    records = result.records
    assert len(records) == 6
    assert all(r["config"]["autocast"] == "bf16" and r["config"]["device"] == "cpu"
               for r in records)
    assert all(math.isfinite(r["final_val_loss"]) for r in records)
    report = build_report(records, verdict_preset=small.verdict, bootstrap=200)
    assert report.verdict is not None and report.verdict.preset == "gpu"
