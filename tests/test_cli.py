"""The command line: exit 0 when all agree, 1 on a disagreement (a timeout included), 2 on a usage
or environment error, 3 when every input was refused, 70 on a bug in refllm, 130 on Ctrl-C, 141
on a closed output pipe (refllm.cli.EXIT)."""

import errno
import importlib
import importlib.abc
import os
import pathlib
import subprocess
import sys
import types

import pytest
import torch

import refllm
from refllm import cli
from refllm.cli import EXIT, demo_rows, main
from refllm.testing.contract import Contract
from refllm.testing.registry import RECORDS

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


class _AdamWithoutMaximize(torch.optim.Adam):
    """An Adam that has no ``maximize``: it always descends (the flag is dropped)."""

    def __init__(self, params, **hyper):
        super().__init__(params, **hyper)
        for group in self.param_groups:
            group["maximize"] = False


class _SGDAtMomentum09(torch.optim.SGD):
    """An SGD that supports momentum 0.9 only, and says so (ValueError for any other)."""

    def __init__(self, params, **hyper):
        super().__init__(params, **hyper)
        if any(group["momentum"] != 0.9 for group in self.param_groups):
            raise ValueError("momentum 0.9 only")


BUGGY.adam_without_maximize = _AdamWithoutMaximize
BUGGY.sgd_at_momentum_09 = _SGDAtMomentum09
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
    assert main(["check", "conv2d", "torch:conv2d"]) == 2
    assert main(["check", "sdpa", "torch.nn.functional:scaled_dot_product_attention",
                 "--dtype", "int8"]) == 2
    assert main(["check", "sdpa", "torch.nn.functional:scaled_dot_product_attention",
                 "--features", "warp_speed"]) == 2


def test_demo_checks_torch_against_refllm_and_exits_zero(capsys):
    assert main(["demo", "--examples", "5"]) == 0
    out = capsys.readouterr().out
    assert "F.scaled_dot_product_attention" in out and "nn.MultiheadAttention" in out
    assert out.rstrip().splitlines()[-1].startswith(f"all {len(demo_rows())} ops agree")


def test_the_demo_has_one_row_per_torch_implementation_in_the_op_records():
    rows = demo_rows()
    assert [label for label, *_ in rows] == [d.label for r in RECORDS.values() for d in r.demos]
    # every op PyTorch implements; a decoder with a KV cache is not one of its functions, nor
    # is RoPE
    assert {record.name for _, record, *_ in rows} == set(RECORDS) - {"kv-cache", "rope"}


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
     "--like: give one of ['gd', 'sgd', 'adam', 'adamw', 'muon', 'adafactor'], got "
     "['sgd', 'adam']"),
    (["check", "cross-entropy", "torch.nn.functional:cross_entropy", "--features", ","],
     "--features: give at least one of"),
    (["check", "optimizer", "torch.optim:Adam", "--like", "adam", "--set", "momentum=0.9"],
     "--set: unknown hyper-parameter 'momentum' of optimizer like adam; the known ones: "
     "['amsgrad', 'betas', 'eps', 'lr', 'maximize', 'weight_decay']"),
    (["check", "optimizer", "torch.optim:Adam", "--like", "adam", "--set", "maximize=0"],
     "--set maximize: expected true or false, got 0"),
    (["check", "optimizer", "torch.optim:Adam", "--like", "adam", "--set", "betas=0.9"],
     "--set betas: expected 2 comma-separated values, got 0.9"),
    ([*MSE, "--set", "lr=0.1"], "--set: mse has no hyper-parameters to set"),
    ([*MSE, "--threads", "0"], "--threads: threads must be >= 1, got 0"),
    ([*MSE, "--examples", "0"], "--examples: examples must be >= 1, got 0"),
])
def test_bad_options_are_usage_errors_before_anything_is_drawn(capsys, args, message):
    assert main(args) == 2
    assert message in _one_error_line(capsys)


def test_set_holds_hyper_parameters_fixed(capsys, monkeypatch):
    # an Adam without maximize fails where maximize is drawn, and passes with it held False
    monkeypatch.setitem(sys.modules, "refllm_cli_buggy", BUGGY)
    adam = ["check", "optimizer", "refllm_cli_buggy:adam_without_maximize", "--like", "adam",
            "--examples", "10", "--seed", "0"]
    assert main(adam) == 1
    assert "parameters" in capsys.readouterr().out
    assert main([*adam, "--set", "maximize=false"]) == 0
    # each value reaches every param group: this SGD raises for any momentum but 0.9
    sgd = ["check", "optimizer", "refllm_cli_buggy:sgd_at_momentum_09", "--like", "sgd",
           "--examples", "5", "--seed", "0"]
    assert main([*sgd, "--set", "momentum=0.9", "--set", "lr=0.01"]) == 0
    assert "PASSED" in capsys.readouterr().out


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
    ("tests.test_cli:NO_SUCH", "--contract: module 'tests.test_cli' has no attribute 'NO_SUCH' "
                               "(contract 'tests.test_cli:NO_SUCH')"),
    ("CAUSAL_ONLY", "--contract: contract must be written 'module:name', got 'CAUSAL_ONLY'"),
])
def test_a_bad_contract_is_a_usage_error(capsys, contract, message):
    assert main([*MSE, "--contract", contract]) == 2
    assert message in _one_error_line(capsys)


# -- the exit statuses of every command ---------------------------------------------------------


@pytest.fixture
def fake_command(monkeypatch):
    """A subcommand ``refllm fake`` whose ``run`` the test sets (``module.run = ...``), wired in
    as train, scaling and fit are (`refllm.cli.SUBCOMMANDS`)."""
    module = types.ModuleType("refllm_cli_fake_command")
    module.add_arguments = lambda parser: None
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*cli.SUBCOMMANDS, ("fake", module.__name__, "fake")])
    return module


def _raises(exc):
    def run(args):
        raise exc

    return run


@pytest.mark.parametrize("exc, shown", [
    (ValueError("--set lr: must be a number,\n got 'abc'"),
     "--set lr: must be a number, got 'abc'"),
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/records.jsonl"),
     "[Errno 28] No space left on device: 'runs/x/records.jsonl'"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "corpus.txt"),
     "[Errno 2] No such file or directory: 'corpus.txt'"),
    (FileExistsError(errno.EEXIST, "File exists", "runs/x"), "[Errno 17] File exists: 'runs/x'"),
    (PermissionError(errno.EACCES, "Permission denied", "/out"),
     "[Errno 13] Permission denied: '/out'"),
])
def test_a_value_or_os_error_is_one_line_and_status_2(fake_command, capsys, exc, shown):
    fake_command.run = _raises(exc)
    assert main(["fake"]) == EXIT["usage"] == 2
    assert _one_error_line(capsys) == f"refllm: error: {shown}"


@pytest.mark.parametrize("exc", [TypeError("unsupported operand type(s)"), KeyError("loss"),
                                 AttributeError("'list' object has no attribute 'get'"),
                                 RuntimeError("shape mismatch"), AssertionError()])
def test_any_other_exception_is_a_bug_with_its_traceback_and_status_70(fake_command, capsys,
                                                                         exc):
    fake_command.run = _raises(exc)
    assert main(["fake"]) == EXIT["internal"] == 70
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert lines[0] == "Traceback (most recent call last):" and "def run" not in err
    assert any("in run" in line for line in lines)  # the frame that raised is shown
    assert lines[-1].startswith("refllm: internal error (a bug in refllm, please report it): "
                                f"{type(exc).__name__}")


def test_a_subcommand_that_cannot_even_be_imported_is_a_bug_not_a_crash(monkeypatch, capsys):
    monkeypatch.setattr(cli, "SUBCOMMANDS",
                        [*cli.SUBCOMMANDS, ("broken", "tests.no_such_refllm_layer.cli", "x")])
    assert main(["demo", "--examples", "1"]) == 70
    assert "ModuleNotFoundError" in capsys.readouterr().err.strip().splitlines()[-1]


def test_ctrl_c_is_one_line_and_status_130(fake_command, capsys):
    fake_command.run = _raises(KeyboardInterrupt())
    assert main(["fake"]) == EXIT["interrupted"] == 130
    captured = capsys.readouterr()
    assert captured.err == "refllm: interrupted\n" and captured.out == ""


def test_a_system_exit_inside_a_subcommand_passes_through_unchanged(fake_command):
    fake_command.run = _raises(SystemExit(4))
    with pytest.raises(SystemExit) as raised:
        main(["fake"])
    assert raised.value.code == 4


def test_argparse_keeps_its_own_statuses(capsys):
    assert main(["check", "--help"]) == 0 and "usage: refllm check" in capsys.readouterr().out
    assert main(["check", "sdpa"]) == 2  # the target is missing
    assert "required: target" in capsys.readouterr().err


def test_the_subcommands_own_statuses_pass_through(fake_command):
    for status in (0, 1, 3):
        fake_command.run = lambda args, status=status: status
        assert main(["fake"]) == status


def test_a_pipe_closed_before_the_last_flush_is_141_and_quiet(fake_command, monkeypatch, capsys):
    """The output a command printed sits in stdout's buffer until the end: a reader that is gone
    by then (``refllm fit ... | true``) is found by `main`'s flush, not by the interpreter's."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    closed = open(write_end, "w", buffering=8192)  # a pipe: block-buffered, as stdout is
    monkeypatch.setattr(sys, "stdout", closed)

    def run(args):
        print("a table row")  # buffered: nothing is written yet
        return 0

    fake_command.run = run
    try:
        assert main(["fake"]) == EXIT["broken_pipe"] == 141
        closed.flush()  # stdout now points at os.devnull: the interpreter's last flush is quiet
    finally:
        closed.close()
    assert capsys.readouterr().err == ""


@pytest.mark.slow  # a fresh interpreter imports torch (about 4 s)
def test_refllm_demo_into_a_pipe_closed_early_exits_141_without_a_traceback():
    proc = subprocess.Popen([sys.executable, "-u", "-m", "refllm", "demo", "--examples", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)  # as `refllm demo | head -c 10` does
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and err == ""


def test_every_exit_status_is_documented_in_the_module_and_the_oracle_guide():
    guide = (pathlib.Path(__file__).parents[1] / "docs" / "oracle.md").read_text()
    doc = cli.__doc__ or ""
    for status in EXIT.values():
        assert f"\n    {status} " in doc, status
        assert f"\n| {status} | " in guide, status
    assert sorted(EXIT.values()) == [0, 1, 2, 3, 70, 130, 141]


# -- refllm check: loading the target -----------------------------------------------------------


@pytest.fixture
def bare_folder(tmp_path, monkeypatch):
    """``tmp_path`` as the current folder, not on ``sys.path`` (as for the console script)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path


@pytest.mark.parametrize("body, shown", [
    ("import sys\nsys.exit(0)\n", "SystemExit with code 0"),
    ("import sys\nsys.exit(3)\n", "SystemExit with code 3"),
    ("raise SystemExit('usage: kernel.py N')\n", "SystemExit with code 'usage: kernel.py N'"),
    ("raise RuntimeError('CUDA driver too old')\n", "RuntimeError: CUDA driver too old"),
])
def test_a_target_module_that_exits_or_raises_on_import_is_a_usage_error_naming_it(
        bare_folder, capsys, body, shown):
    name = f"refllm_cli_exits_{abs(hash(body))}"
    (bare_folder / f"{name}.py").write_text(body)
    assert main(["check", "mse", f"{name}:mse_loss"]) == 2
    line = _one_error_line(capsys)
    assert f"module {name!r}" in line and shown in line


def test_a_target_module_in_the_current_folder_is_found(bare_folder, capsys):
    (bare_folder / "refllm_cli_local_kernel.py").write_text(
        "from torch.nn.functional import mse_loss\nSOME_CONSTANT = 3\n")
    path = list(sys.path)
    assert main(["check", "mse", "refllm_cli_local_kernel:mse_loss", "--examples", "3",
                 "--seed", "0"]) == 0
    assert "PASSED" in capsys.readouterr().out and sys.path == path  # only for the import


def test_a_target_that_is_not_callable_is_a_usage_error_naming_it(bare_folder, capsys):
    (bare_folder / "refllm_cli_constants.py").write_text("SOME_CONSTANT = 3\n")
    assert main(["check", "mse", "refllm_cli_constants:SOME_CONSTANT"]) == 2
    assert ("target 'refllm_cli_constants:SOME_CONSTANT' is a int, not a function or class"
            in _one_error_line(capsys))


def test_a_contract_module_that_exits_on_import_is_a_usage_error(bare_folder, capsys):
    (bare_folder / "refllm_cli_contract_exits.py").write_text("raise SystemExit(0)\n")
    assert main([*MSE, "--contract", "refllm_cli_contract_exits:C"]) == 2
    assert ("--contract: module 'refllm_cli_contract_exits' of contract "
            "'refllm_cli_contract_exits:C' exited" in _one_error_line(capsys))


# -- refllm check --timeout ---------------------------------------------------------------------


def _hangs_on_long_inputs(input, target, reduction="mean"):
    import time

    if input.numel() > 3:
        time.sleep(60)  # never returns in time on these inputs
    return torch.nn.functional.mse_loss(input, target, reduction=reduction)


def test_a_call_that_outlives_the_timeout_fails_the_check_with_status_1(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "refllm_cli_hangs",
                        types.SimpleNamespace(mse_loss=_hangs_on_long_inputs))
    assert main(["check", "mse", "refllm_cli_hangs:mse_loss", "--examples", "20", "--seed", "0",
                 "--timeout", "0.2"]) == 1
    out = capsys.readouterr().out
    assert "finishes in time" in out and "timed out on" in out and "timeout of 0.2 s" in out


@pytest.mark.parametrize("value, message", [
    ("-1", "--timeout: timeout must lie in [0.0, inf], got -1.0"),
    ("inf", "--timeout: timeout must be finite, got inf"),
    ("nan", "--timeout: timeout must be finite, got nan"),
])
def test_a_bad_timeout_is_a_usage_error(capsys, value, message):
    assert main([*MSE, "--timeout", value]) == 2
    assert message in _one_error_line(capsys)


def test_timeout_0_means_none(capsys):
    assert main([*MSE, "--timeout", "0"]) == 0
