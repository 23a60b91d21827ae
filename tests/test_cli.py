"""The command line: exit 0 when all agree, 1 on a disagreement, 2 on a usage error."""

import sys
import types

from refllm.cli import main

BUGGY = types.ModuleType("refllm_cli_buggy")


def _mse_without_mean(input, target, reduction="mean"):
    import torch.nn.functional as F

    return F.mse_loss(input, target, reduction="sum" if reduction == "mean" else reduction)


BUGGY.mse_loss = _mse_without_mean


def test_check_exits_zero_when_torch_agrees(capsys):
    assert main(["check", "mse", "torch.nn.functional:mse_loss", "--examples", "10",
                 "--seed", "0"]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_check_multihead_takes_a_module_class(capsys):
    assert main(["check", "multihead", "torch.nn:MultiheadAttention", "--examples", "10",
                 "--seed", "0", "--features", "bias,need_weights"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "grad wrt parameter 'out_proj.weight'" in out


def test_check_exits_one_on_a_disagreement_and_prints_the_report(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "refllm_cli_buggy", BUGGY)
    assert main(["check", "mse", "refllm_cli_buggy:mse_loss", "--examples", "50",
                 "--seed", "0"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "forward output" in out and "reproduce it with" in out


def test_check_exits_two_on_an_unimportable_target(capsys):
    assert main(["check", "sdpa", "no_such_package_xyz:attention"]) == 2
    assert "cannot import module 'no_such_package_xyz'" in capsys.readouterr().err


def test_check_exits_two_on_usage_errors(capsys):
    assert main(["check", "softmax", "torch:softmax"]) == 2
    assert main(["check", "sdpa", "torch.nn.functional:scaled_dot_product_attention",
                 "--dtype", "int8"]) == 2
    assert main(["check", "sdpa", "torch.nn.functional:scaled_dot_product_attention",
                 "--features", "warp_speed"]) == 2


def test_demo_checks_torch_against_refllm_and_exits_zero(capsys):
    assert main(["demo", "--examples", "5"]) == 0
    out = capsys.readouterr().out
    assert "F.scaled_dot_product_attention" in out and "nn.MultiheadAttention" in out
    assert out.rstrip().splitlines()[-1].startswith("all 7 ops agree")
