"""A check's target (or contract) named ``"module:name"``: found in the current folder, refused
with a ValueError naming it when its module exits or raises on import or when it is not callable;
the checks take the CLI's dtype spellings and refuse others listing what is accepted."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from refllm.cli import demo_rows
from refllm.testing import check_mse
from refllm.testing.engine.options import DTYPES, CheckOptions, parse_dtype
from refllm.testing.engine.targets import load, resolve
from refllm.testing.registry import RECORDS


@pytest.fixture
def bare_folder(tmp_path, monkeypatch):
    """``tmp_path`` as the current folder, not on ``sys.path`` (as for a console script)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    return tmp_path


def test_a_module_in_the_current_folder_is_found_and_sys_path_is_restored(bare_folder):
    (bare_folder / "refllm_loading_local.py").write_text("def attention(q, k, v):\n    return q\n")
    path = list(sys.path)
    fn = load("refllm_loading_local:attention")
    assert fn.__module__ == "refllm_loading_local" and sys.path == path


@pytest.mark.parametrize("body, shown", [
    ("import sys\nsys.exit()\n", "SystemExit with code None"),
    ("import sys\nsys.exit(0)\n", "SystemExit with code 0"),
    ("raise SystemExit(2)\n", "SystemExit with code 2"),
    ("import argparse\nargparse.ArgumentParser().parse_args(['--nope'])\n",
     "SystemExit with code 2"),
    ("raise RuntimeError('no GPU here')\n", "RuntimeError: no GPU here"),
    ("import refllm_loading_no_such_dependency\n", "ModuleNotFoundError"),
])
def test_a_module_that_exits_or_raises_on_import_is_a_value_error_naming_it(bare_folder, body,
                                                                           shown):
    name = f"refllm_loading_exits_{abs(hash(body))}"
    (bare_folder / f"{name}.py").write_text(body)
    with pytest.raises(ValueError, match=f"module '{name}' of target '{name}:fn'") as raised:
        load(f"{name}:fn")
    assert shown in str(raised.value)
    with pytest.raises(ValueError, match=f"module '{name}'"):
        check_mse(f"{name}:fn", examples=1)  # the Python checks load it the same way


def test_a_target_that_is_not_callable_is_a_value_error_naming_it(bare_folder):
    (bare_folder / "refllm_loading_constants.py").write_text("SOME_CONSTANT = 3\n")
    message = "target 'refllm_loading_constants:SOME_CONSTANT' is a int, not a function or class"
    with pytest.raises(ValueError, match=message):
        load("refllm_loading_constants:SOME_CONSTANT")
    with pytest.raises(ValueError, match=message):
        resolve("refllm_loading_constants:SOME_CONSTANT")
    with pytest.raises(ValueError, match=message):
        check_mse("refllm_loading_constants:SOME_CONSTANT", examples=1)
    assert load("refllm_loading_constants:SOME_CONSTANT", callable_only=False) == 3


@pytest.mark.parametrize("spec", ["torch.nn.functional", ":mse_loss", "torch.nn.functional:",
                                  42])
def test_a_target_not_written_module_colon_name_is_a_value_error(spec):
    with pytest.raises(ValueError, match="target must be written 'module:name', got"):
        load(spec)


def test_a_contract_module_that_exits_on_import_is_a_value_error_naming_the_option(bare_folder):
    (bare_folder / "refllm_loading_contract.py").write_text("import sys\nsys.exit(1)\n")
    with pytest.raises(ValueError, match="--refllm-mse-contract: module "
                                         "'refllm_loading_contract' of contract"):
        CheckOptions(contract="refllm_loading_contract:C").kwargs(
            RECORDS["mse"], flag="--refllm-{}", choice_flag="--refllm-mse-{}")


# -- dtype spellings -----------------------------------------------------------------------------


@pytest.mark.parametrize("spelling, dtype", [
    ("float64", torch.float64), ("float32", torch.float32), ("FLOAT32", torch.float32),
    ("torch.float32", torch.float32), ("bf16", torch.bfloat16), ("bfloat16", torch.bfloat16),
    ("fp16", torch.float16), ("float16", torch.float16), ("half", torch.float16),
    (torch.float16, torch.float16), (torch.bfloat16, torch.bfloat16),
])
def test_the_clis_dtype_spellings(spelling, dtype):
    assert parse_dtype(spelling) is dtype


@pytest.mark.parametrize("label, record, target, extra",
                         [r for r in demo_rows() if r[0] in {"F.scaled_dot_product_attention",
                                                             "nn.MultiheadAttention",
                                                             "F.cross_entropy", "F.mse_loss",
                                                             "torch.optim.AdamW"}])
def test_every_check_takes_a_dtype_by_name(label, record, target, extra):
    report = record.run(target, dtype="float64", examples=1, seed=0, **extra)
    assert report.passed and report.dtype is torch.float64


def test_check_kv_cache_takes_a_dtype_by_name():
    from refllm.model import GPT, GPTConfig
    from refllm.testing import check_kv_cache

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, n_ctx=8, n_layer=1, n_head=2, d_model=8))
    report = check_kv_cache(model, dtype="float32", examples=2, seed=0)
    assert report.passed and report.dtype is torch.float32


@pytest.mark.parametrize("bad", ["float8", "int8", "cuda", 32, None, torch.int64,
                                 torch.complex64])
def test_any_other_dtype_is_a_value_error_listing_what_is_accepted(bad):
    with pytest.raises(ValueError, match=r"unknown dtype .*; choose from \[.*'bf16'.*'float32'"
                                         r".*torch.bfloat16"):
        check_mse(F.mse_loss, dtype=bad, examples=1)
    assert set(DTYPES) >= {"float64", "float32", "bf16", "bfloat16", "fp16", "float16"}


@pytest.mark.parametrize("device", ["cpu", "cpu:0", torch.device("cpu")])
def test_the_device_spellings_of_the_cli_and_torch_devices(device):
    assert check_mse(F.mse_loss, device=device, examples=1, seed=0).passed


@pytest.mark.parametrize("bad", ["gpu", "CPU", 3.5])
def test_an_unknown_device_is_a_value_error(bad):
    with pytest.raises(ValueError, match="is not a torch device; write cpu, cuda"):
        check_mse(F.mse_loss, device=bad, examples=1)
