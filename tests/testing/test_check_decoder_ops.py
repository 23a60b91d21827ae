"""The decoder ops' checks (RMSNorm, ...) pass PyTorch's and Hugging Face's implementations at
several seeds in float32 and bfloat16, and reach the command line and the conformance suite.

The planted bugs of these ops are in the mutant corpus (tests/testing/mutants/norm_mutants.py);
how often each strategy draws its default call is in test_feature_shares.py.
"""

from __future__ import annotations

import os

import pytest
import torch

from refllm.cli import main
from refllm.testing.checks import check_layer_norm, check_rms_norm, check_swiglu
from refllm.testing.contract import Contract
from refllm.testing.registry import RECORDS
from refllm.testing.rms_norm.adapters import hf_llama_rms_norm, nn_rms_norm
from refllm.testing.swiglu.adapters import hf_mlp, torch_swiglu

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytest_plugins = ["pytester"]

DTYPES = (torch.float32, torch.bfloat16)
SEEDS = (0, 1, 2)

# (check, target, options): PyTorch's own implementations and Hugging Face's through adapters
REAL = {
    "F.rms_norm": (check_rms_norm, torch.nn.functional.rms_norm, {}),
    "nn.RMSNorm": (check_rms_norm, nn_rms_norm, {}),
    # one axis, always a weight; it rounds before the weight multiply
    "LlamaRMSNorm": (check_rms_norm, hf_llama_rms_norm,
                     {"features": ["eps", "small_variance", "large_offset"],
                      "cast": "before_weight"}),
    "F.silu(gate) * up": (check_swiglu, torch_swiglu, {}),
    **{f"LlamaMLP {a}": (check_swiglu, lambda g, u, a=a: hf_mlp(a)(g, u), {"activation": a})
       for a in ("silu", "gelu", "gelu_tanh")},
    "GemmaMLP gelu_tanh": (check_swiglu, lambda g, u: hf_mlp("gelu_tanh", module="gemma")(g, u),
                           {"activation": "gelu_tanh"}),
}
REAL_FLOAT32 = {
    # PyTorch's CPU bfloat16 LayerNorm backward is less accurate than the rule allows (below)
    "F.layer_norm": (check_layer_norm, torch.nn.functional.layer_norm, {}),
}


@pytest.mark.parametrize(("name", "dtype"), [(n, d) for n in REAL for d in DTYPES]
                         + [(n, torch.float32) for n in REAL_FLOAT32], ids=str)
def test_pytorch_and_hugging_face_pass_at_several_seeds(name, dtype):
    pytest.importorskip("transformers")
    check, target, options = {**REAL, **REAL_FLOAT32}[name]
    for seed in SEEDS:
        report = check(target, dtype=dtype, seed=seed, raise_on_failure=False, **options)
        assert report.passed, str(report)


def test_llama_rms_norm_rounds_before_the_weight_and_says_so():
    # checked as if it rounded once (PyTorch's convention) it fails in bfloat16 on some seed:
    # the cast choice is what makes its rounding the tolerance's plain computation
    pytest.importorskip("transformers")
    reports = [check_rms_norm(hf_llama_rms_norm, dtype=torch.bfloat16, seed=seed,
                              features=["eps", "small_variance", "large_offset"],
                              raise_on_failure=False) for seed in range(4)]
    assert not all(r.passed for r in reports)


def test_pytorchs_bfloat16_layer_norm_backward_is_found_less_accurate_than_refllms_rule():
    # a finding, not a false alarm: on CPU, F.layer_norm's bfloat16 input gradient of a
    # two-element row does not sum to zero (error 0.0039 where the exact one is 1e-5 and
    # refllm's float32-internal computation errs by 1e-8), and its weight and bias gradients
    # over 1,100 rows are off by 4% to 8% (refllm's plain rule: 0.3%); docs/oracle.md
    report = check_layer_norm(torch.nn.functional.layer_norm, dtype=torch.bfloat16, seed=0,
                              raise_on_failure=False)
    assert {"grad wrt weight", "grad wrt bias"} <= set(report.failed_properties)
    small = check_layer_norm(torch.nn.functional.layer_norm, dtype=torch.bfloat16, seed=0,
                             raise_on_failure=False, contract=Contract(long_axes=False))
    assert small.failed_properties == ["grad wrt input"]
    assert report.property("forward output").passed and small.property("forward output").passed


# (op, PyTorch's implementation) for the command line and the conformance suite
TORCH = {"rms-norm": "torch.nn.functional:rms_norm",
         "layer-norm": "torch.nn.functional:layer_norm",
         "swiglu": "refllm.testing.swiglu.adapters:torch_swiglu"}


@pytest.mark.parametrize("op", list(TORCH))
def test_refllm_check_passes_pytorchs_implementation(op, capsys):
    assert main(["check", op, TORCH[op], "--examples", "10", "--seed", "0"]) == 0
    assert f"refllm oracle: {op} of {TORCH[op]}" in capsys.readouterr().out
    if op != "layer-norm":  # see the bfloat16 LayerNorm finding above
        assert main(["check", op, TORCH[op], "--dtype", "bf16", "--examples", "10"]) == 0


@pytest.mark.parametrize("op", list(TORCH))
def test_the_conformance_suite_runs_the_op(op, pytester):
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--pyargs", "refllm.conformance", "--refllm-examples", "5",
        "--refllm-seed", "0", f"--refllm-{op}={TORCH[op]}")
    result.assert_outcomes(passed=1, skipped=len(RECORDS) - 1)
