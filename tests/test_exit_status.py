"""Every `refllm` command's exit status: a user's error is one line and 2, a bug keeps its
traceback and 70, Ctrl-C is 130, a closed pipe 141 (refllm.cli.EXIT)."""

import errno
import os
import subprocess
import sys
import textwrap
import types

import pytest
import torch

from refllm import cli
from refllm.cli import EXIT, main


def _raising(exc):
    def run(args):
        raise exc

    return run


@pytest.fixture
def fake_train(monkeypatch):
    """`refllm train` replaced by a function of the test's choosing."""
    module = types.ModuleType("refllm_fake_train")
    monkeypatch.setitem(sys.modules, "refllm_fake_train", module)
    real = cli._dispatch

    def dispatch(args):
        if args.command == "train":
            return module.run(args)
        return real(args)

    monkeypatch.setattr(cli, "_dispatch", dispatch)
    return module


@pytest.mark.parametrize("exc, code, text", [
    (ValueError("--set lr: must be a number, got 'abc'"), 2, "refllm: error: --set lr"),
    (OSError(errno.ENOSPC, "No space left on device", "runs/x/records.jsonl"), 2,
     "No space left on device: 'runs/x/records.jsonl'"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "corpus.txt"), 2,
     "No such file or directory: 'corpus.txt'"),
    (KeyboardInterrupt(), 130, "refllm: interrupted"),
])
def test_a_users_error_is_one_line_and_its_status(fake_train, capsys, exc, code, text):
    fake_train.run = _raising(exc)
    assert main(["train"]) == code
    err = capsys.readouterr().err
    assert text in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), KeyError("loss"),
                                 AttributeError("'list' object has no attribute 'get'")])
def test_a_bug_keeps_its_traceback_and_exits_70(fake_train, capsys, exc):
    fake_train.run = _raising(exc)
    assert main(["train"]) == EXIT["internal"] == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "refllm: internal error (a bug in refllm" in err
    assert type(exc).__name__ in err.strip().splitlines()[-1]


def test_a_closed_pipe_is_141_and_quiet(tmp_path):
    code = textwrap.dedent("""
        import sys
        from refllm import cli
        def spam(args):
            for i in range(10**6):
                print("row", i)
            return 0
        cli._dispatch = spam
        sys.exit(cli.main(["demo"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()  # as `| head -c 10` does
    err = proc.stderr.read().decode()
    assert proc.wait() == 141 and "Traceback" not in err and err == ""


def test_a_target_module_that_exits_on_import_is_a_usage_error_naming_it(tmp_path, capsys,
                                                                          monkeypatch):
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", os.getcwd())])
    assert main(["check", "mse", "exits_on_import:mse_loss"]) == 2
    err = capsys.readouterr().err
    assert "module 'exits_on_import'" in err and "exited while it was imported" in err


def test_a_target_module_in_the_current_folder_is_found(tmp_path, capsys, monkeypatch):
    (tmp_path / "my_local_kernel.py").write_text(
        "from torch.nn.functional import mse_loss\nCONSTANT = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert main(["check", "mse", "my_local_kernel:mse_loss", "--examples", "5"]) == 0
    assert main(["check", "mse", "my_local_kernel:CONSTANT"]) == 2
    assert "is a int, not a function or class" in capsys.readouterr().err


@pytest.mark.parametrize("spelling, dtype", [("float32", torch.float32), ("bf16", torch.bfloat16),
                                             ("torch.float64", torch.float64),
                                             (torch.float16, torch.float16)])
def test_the_python_checks_take_the_clis_dtype_spellings(spelling, dtype):
    from refllm.testing import check_mse

    report = check_mse(torch.nn.functional.mse_loss, dtype=spelling, examples=3, seed=0)
    assert report.passed and report.dtype == dtype


def test_an_unknown_dtype_lists_what_is_accepted():
    from refllm.testing import check_mse

    with pytest.raises(ValueError, match="unknown dtype 'float8'; choose from .*'bf16'"):
        check_mse(torch.nn.functional.mse_loss, dtype="float8", examples=1)


def _hangs_on_long_inputs(input, target, reduction="mean"):
    import time

    if input.numel() > 3:
        time.sleep(600)  # a kernel that never returns on these inputs
    return torch.nn.functional.mse_loss(input, target, reduction=reduction)


def test_a_hanging_target_times_out_and_the_report_says_on_what(monkeypatch):
    from refllm.testing import check_mse

    monkeypatch.setitem(sys.modules, "refllm_hangs", types.SimpleNamespace(
        mse_loss=_hangs_on_long_inputs))
    report = check_mse(_hangs_on_long_inputs, examples=20, seed=0, timeout=0.2,
                       raise_on_failure=False)
    assert not report.passed
    text = str(report)
    assert "timed out on this input" in text and "0.2 s" in text
    assert report.case is not None and "finishes in time" in text


def test_the_cli_takes_a_timeout_and_exits_1_when_it_fires(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "refllm_hangs", types.SimpleNamespace(
        mse_loss=_hangs_on_long_inputs))
    assert main(["check", "mse", "refllm_hangs:mse_loss", "--examples", "20", "--seed", "0",
                 "--timeout", "0.2"]) == 1
    assert "timed out on this input" in capsys.readouterr().out
    assert main(["check", "mse", "refllm_hangs:mse_loss", "--timeout", "-1"]) == 2
