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
from refllm.testing.checks import (
    check_layer_norm,
    check_linear_cross_entropy,
    check_rms_norm,
    check_rope,
    check_swiglu,
)
from refllm.testing.contract import Contract
from refllm.testing.registry import RECORDS
from refllm.testing.rms_norm.adapters import hf_llama_rms_norm, nn_rms_norm
from refllm.testing.rope.adapters import hf_apply_rotary_pos_emb, hf_llama_rotary_embedding
from refllm.testing.rope.check import ROPE_FEATURES
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
    # the half-split layout only
    "apply_rotary_pos_emb": (check_rope, hf_apply_rotary_pos_emb,
                             {"features": [f for f in ROPE_FEATURES if f != "gptj"]}),
    "F.linear_cross_entropy": (check_linear_cross_entropy,
                               torch.nn.functional.linear_cross_entropy, {}),
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


def test_hugging_faces_float32_rotary_tables_are_found_imprecise_at_positions_past_800():
    # a finding: LlamaRotaryEmbedding computes the angles m theta in float32, whose spacing at
    # m theta ~ 1000 rad is 6e-5 rad: the fixed default call at 1,100 positions errs by 1e-4
    # where refllm's float64 tables err by 1e-7 (its rotation itself passes, above)
    pytest.importorskip("transformers")
    report = check_rope(hf_llama_rotary_embedding, dtype=torch.float32, seed=0,
                        features=["positions", "offset", "long_positions", "base"],
                        raise_on_failure=False)
    assert "forward output" in report.failed_properties
    passed = check_rope(hf_llama_rotary_embedding, dtype=torch.bfloat16, seed=0,
                        features=["positions", "offset", "long_positions", "base"],
                        raise_on_failure=False)
    assert passed.passed, str(passed)  # within bfloat16's own rounding


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rope_positions_past_2_to_the_15(dtype):
    from tests.testing.mutants import rope_mutants as R

    assert check_rope(R.rope, dtype=dtype, seed=0, max_position=2**17,
                      features=["positions", "offset", "long_positions"]).passed
    report = check_rope(R.rope_tables_in_input_dtype, dtype=torch.float32, seed=0,
                        max_position=2**17, raise_on_failure=False,
                        features=["offset", "long_positions"])
    assert "forward output" in report.failed_properties


# (op, an implementation PyTorch or Hugging Face ships, its options) for the command line and
# the conformance suite
TORCH = {"rms-norm": ("torch.nn.functional:rms_norm", {}),
         "layer-norm": ("torch.nn.functional:layer_norm", {}),
         "swiglu": ("refllm.testing.swiglu.adapters:torch_swiglu", {}),
         "rope": ("refllm.testing.rope.adapters:hf_apply_rotary_pos_emb",
                  {"features": ",".join(f for f in ROPE_FEATURES if f != "gptj")}),
         "linear-cross-entropy": ("torch.nn.functional:linear_cross_entropy", {})}


@pytest.mark.parametrize("op", list(TORCH))
def test_refllm_check_passes_pytorchs_implementation(op, capsys):
    target, options = TORCH[op]
    extra = [a for k, v in options.items() for a in (f"--{k}", v)]
    assert main(["check", op, target, "--examples", "10", "--seed", "0", *extra]) == 0
    assert f"refllm oracle: {op} of {target}" in capsys.readouterr().out
    if op != "layer-norm":  # see the bfloat16 LayerNorm finding above
        assert main(["check", op, target, "--dtype", "bf16", "--examples", "10", *extra]) == 0


@pytest.mark.parametrize("op", list(TORCH))
def test_the_conformance_suite_runs_the_op(op, pytester):
    target, options = TORCH[op]
    extra = [f"--refllm-{op}-{k}={v}" for k, v in options.items()]
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--pyargs", "refllm.conformance", "--refllm-examples", "5",
        "--refllm-seed", "0", f"--refllm-{op}={target}", *extra)
    result.assert_outcomes(passed=1, skipped=len(RECORDS) - 1)
