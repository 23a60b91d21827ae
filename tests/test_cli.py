"""The command line: exit 0 when all agree, 1 on a disagreement, 2 on a usage error."""

import importlib
import importlib.abc
import sys
import types

import pytest
import torch

import refllm
from refllm.cli import demo_rows, main
from refllm.testing.contract import Contract
from refllm.testing.records import RECORDS

BUGGY = types.ModuleType("refllm_cli_buggy")


def _mse_without_mean(input, target, reduction="mean"):
    import torch.nn.functional as F

    return F.mse_loss(input, target, reduction="sum" if reduction == "mean" else reduction)


BUGGY.mse_loss = _mse_without_mean


def _causal_only_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False,
                           scale=None, enable_gqa=False):
    """A kernel that supports causal attention only, and says so."""
    import torch.nn.functional as F

    if not is_causal or attn_mask is not None:
        raise NotImplementedError("causal attention only")
    return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scale,
                                          enable_gqa=enable_gqa)


BUGGY.causal_only = _causal_only_attention
CAUSAL_ONLY = Contract(causal="only", masks="none", sizes={"t": (1, 6), "s": (1, 6)})
HEAD_DIMS = Contract(head_dims=(8,))


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


def test_check_exits_three_when_the_target_refuses_every_input(capsys):
    assert main(["check", "sdpa", "tests.testing.test_unsupported:refuses_everything",
                 "--examples", "3", "--seed", "0"]) == 3
    assert "UNSUPPORTED" in capsys.readouterr().out


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


def test_the_demo_has_one_row_per_torch_implementation_in_the_op_records():
    rows = demo_rows()
    assert [label for label, *_ in rows] == [d.label for r in RECORDS.values() for d in r.demos]
    assert {record.name for _, record, *_ in rows} == set(RECORDS)


def _one_error_line(capsys):
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("refllm: error: "), captured.err
    return lines[0]


MSE = ["check", "mse", "torch.nn.functional:mse_loss", "--examples", "2", "--seed", "0"]


def test_a_device_this_machine_lacks_is_a_usage_error_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([*MSE, "--device", "cuda"]) == 2
    assert "--device: device 'cuda' is not available on this machine" in _one_error_line(capsys)
    assert main([*MSE, "--device", "gpu"]) == 2
    assert "--device: device 'gpu' is not a torch device" in _one_error_line(capsys)


def test_mse_takes_reductions_and_refuses_features(capsys):
    assert main([*MSE, "--reductions", "sum,none"]) == 0
    assert "\nfeatures: sum, none\n" in capsys.readouterr().out
    assert main([*MSE, "--features", "masks"]) == 2
    assert ("--features: mse has no features to choose (its options: --reductions)"
            in _one_error_line(capsys))
    assert main([*MSE, "--reductions", "mean,avg"]) == 2
    assert "--reductions: unknown mse reductions ['avg']" in _one_error_line(capsys)


@pytest.mark.parametrize("args,message", [
    (["check", "sdpa", "torch.nn.functional:scaled_dot_product_attention", "--like", "adam"],
     "--like: sdpa has no like to choose (its options: --features)"),
    (["check", "optimizer", "torch.optim:SGD", "--like", "lion"],
     "--like: unknown optimizer like ['lion']"),
    (["check", "optimizer", "torch.optim:SGD", "--like", "sgd,adam"],
     "--like: give one of ['gd', 'sgd', 'adam', 'adamw'], got ['sgd', 'adam']"),
    (["check", "cross-entropy", "torch.nn.functional:cross_entropy", "--features", ","],
     "--features: give at least one of"),
    ([*MSE, "--threads", "0"], "--threads: threads must be >= 1, got 0"),
    ([*MSE, "--examples", "0"], "--examples: examples must be >= 1, got 0"),
])
def test_bad_options_are_usage_errors_before_anything_is_drawn(capsys, args, message):
    assert main(args) == 2
    assert message in _one_error_line(capsys)


class _NoPytest(importlib.abc.MetaPathFinder):
    """Makes ``import pytest`` fail, as on a plain ``pip install refllm``."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pytest", "_pytest"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None


def test_refllm_check_runs_on_a_plain_install_without_pytest(capsys):
    """A fresh import of the CLI and the oracle (torch stays loaded), with pytest unimportable."""
    fresh = [m for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest")
             or m == "refllm.cli" or m.startswith("refllm.testing")]
    saved = {m: sys.modules.pop(m) for m in fresh}
    saved_attrs = {name: getattr(refllm, name) for name in ("cli", "testing")}
    meta_path = list(sys.meta_path)  # pytest's own import hook needs pytest: set it aside
    sys.meta_path[:] = [_NoPytest()] + [f for f in meta_path if "_pytest" not in type(f).__module__]
    try:
        cli = importlib.import_module("refllm.cli")
        code = cli.main(MSE)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("pytest", "_pytest"))
    finally:
        sys.meta_path[:] = meta_path
        for m in [m for m in sys.modules if m == "refllm.cli" or m.startswith("refllm.testing")]:
            del sys.modules[m]
        sys.modules.update(saved)
        for name, module in saved_attrs.items():
            setattr(refllm, name, module)
    assert code == 0 and "PASSED" in capsys.readouterr().out
    assert loaded == []


def test_a_contract_by_name_reaches_the_check(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "refllm_cli_buggy", BUGGY)
    causal = ["check", "sdpa", "refllm_cli_buggy:causal_only", "--examples", "2", "--seed", "0"]
    main(causal)  # PyTorch's whole contract: most inputs are refused
    assert "unsupported: the target refused" in capsys.readouterr().out
    assert main([*causal, "--contract", "tests.test_cli:CAUSAL_ONLY"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "unsupported" not in out


@pytest.mark.parametrize("contract,message", [
    ("tests.test_cli:HEAD_DIMS", "--contract: Contract fields ['head_dims'] do not apply to mse"),
    ("tests.test_cli:MSE", "--contract: tests.test_cli:MSE is a list, not a refllm.testing"),
    ("tests.test_cli:NO_SUCH", "--contract: cannot import 'tests.test_cli:NO_SUCH'"),
    ("CAUSAL_ONLY", "--contract: write the contract as 'module:name', got 'CAUSAL_ONLY'"),
])
def test_a_bad_contract_is_a_usage_error(capsys, contract, message):
    assert main([*MSE, "--contract", contract]) == 2
    assert message in _one_error_line(capsys)
