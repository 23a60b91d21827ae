"""The oracle catches every planted bug of the corpus, on the property the bug breaks.

Each mutant (attention_mutants, multihead_mutants, loss_mutants, optim_mutants) is checked with
the active profile's number of examples (40 under ``ci``: no ``examples=`` override), ``seed=0``,
then seeds 1 and 2 until one catches it (``RETRY_SEEDS``; the verdict is the same under every
profile) and the default features, except three mutants that are checked focused where their
author would focus (see ``focused``), and four that only the random kernel-sized tier or an input
regime reaches, checked over 8 seeds under ``-m slow`` (``SLOW``). The correct versions the
mutants derive from must pass, so a caught mutant is caught because of its bug.

The checks run without Hypothesis' shrink phase here: this corpus tests detection, and shrinking
costs 5-15 s per mutant (tests/testing/test_engine.py covers the shrunk report). How often each
mutant is caught over other seeds is measured by ``python -m tests.testing.mutants.catch_rates``
(docs/oracle.md holds its table).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import Phase, settings

from refllm.testing import (
    check_clip_grad_norm,
    check_cross_entropy,
    check_mse,
    check_multihead_attention,
    check_optimizer,
    check_sdpa,
    check_softmax,
)
from refllm.testing.checks import (
    check_layer_norm,
    check_linear_cross_entropy,
    check_rms_norm,
    check_rope,
    check_swiglu,
)
from refllm.testing.contract import Contract
from tests.testing.mutants import attention_mutants as A
from tests.testing.mutants import call_mutants as CM
from tests.testing.mutants import clip_mutants as CG
from tests.testing.mutants import glu_mutants as G
from tests.testing.mutants import kernel_mutants as K
from tests.testing.mutants import linear_ce_mutants as C
from tests.testing.mutants import loss_mutants as L
from tests.testing.mutants import multihead_mutants as M
from tests.testing.mutants import norm_mutants as N
from tests.testing.mutants import optim_mutants as O
from tests.testing.mutants import rope_mutants as R

QKV = ("grad wrt query", "grad wrt key", "grad wrt value")


def focused(targets: str) -> dict[str, Any]:
    """A weighted-mean cross-entropy check on ``targets`` ("index_targets" or "prob_targets")."""
    return {"features": ["weights", targets, "k_dims"], "reductions": ["mean"]}

FWD = ("forward output",)


@dataclasses.dataclass
class Mutant:
    target: Any
    check: Callable[..., Any]
    caught: tuple[str, ...]  # at least one of these properties fails
    passes: tuple[str, ...] = ()  # and none of these does (e.g. forward of a backward-only bug)
    kwargs: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.target.__name__


def sdpa(fn, caught=FWD, passes=(), **kw):
    return Mutant(fn, check_sdpa, caught, passes, kw)


def ce(fn, caught=FWD, passes=(), **kw):
    return Mutant(fn, check_cross_entropy, caught, passes, kw)


def mse(fn, caught=FWD, passes=(), **kw):
    return Mutant(fn, check_mse, caught, passes, kw)


def mha(cls, caught=FWD, passes=(), **kw):
    return Mutant(cls, check_multihead_attention, caught, passes, kw)


def clip(fn, caught, passes=(), **kw):
    return Mutant(fn, check_clip_grad_norm, caught, passes, kw)


def rms(fn, caught=FWD, passes=(), **kw):
    return Mutant(fn, check_rms_norm, caught, passes, kw)


def ln(fn, caught=FWD, passes=(), **kw):
    return Mutant(fn, check_layer_norm, caught, passes, kw)


def glu(fn, caught=FWD, passes=(), **kw):
    return Mutant(fn, check_swiglu, caught, passes, kw)


def rot(fn, caught=(*FWD, "grad wrt x"), passes=(), **kw):
    return Mutant(fn, check_rope, caught, passes, kw)


def lce(fn, caught=(*FWD, "grad wrt input", "grad wrt linear_weight"), passes=(), **kw):
    return Mutant(fn, check_linear_cross_entropy, caught, passes, kw)


BF16 = {"dtype": torch.bfloat16}  # a bug of low-precision arithmetic: checked in bfloat16
FUSED = {"residual": "fused"}  # RMSNorm's fused residual add: the target returns (out, h)


def opt(cls, like, caught=("parameters",), passes=(), **kw):
    return Mutant(cls, check_optimizer, caught, passes, {"like": like, **kw})


MUTANTS = [
    # scaled dot-product attention
    sdpa(A.scale_from_value_width),
    sdpa(A.explicit_scale_ignored, caught=(*FWD, *QKV)),
    sdpa(A.mask_added_before_scaling, caught=(*FWD, *QKV)),
    sdpa(A.bool_mask_inverted),
    sdpa(A.float_mask_cast_to_bool),
    sdpa(A.fully_masked_rows_give_nan, caught=("finite output",)),
    sdpa(A.fully_masked_rows_average_values),
    sdpa(A.causal_bottom_right),
    sdpa(A.causal_mask_hides_the_diagonal),
    sdpa(A.gqa_tiles_heads),
    sdpa(A.gqa_backward_averages_the_group, caught=("grad wrt key", "grad wrt value"),
         passes=FWD),
    sdpa(A.flash_output_not_rescaled),
    sdpa(A.flash_sum_not_rescaled),
    sdpa(A.flash_rescale_sign_flipped, caught=("forward output", "finite output")),
    sdpa(A.flash_lazy_rescale_wrong_frame),
    sdpa(A.ignores_strides),
    sdpa(A.softmax_backward_without_row_sum, caught=("grad wrt query", "grad wrt key"),
         passes=(*FWD, "grad wrt value")),
    sdpa(A.key_grad_missing_scale, caught=("grad wrt key",),
         passes=(*FWD, "grad wrt query", "grad wrt value")),
    sdpa(A.unmasked_fast_path_query_grad_unscaled, caught=("grad wrt query",),
         passes=(*FWD, "grad wrt key", "grad wrt value")),
    sdpa(A.flash_running_max_starts_at_minus_1e4),
    sdpa(A.slices_past_the_grid_limit_skipped, caught=(*FWD, *QKV)),
    sdpa(A.head_dim_past_128_truncated, caught=(*FWD, *QKV)),
    # multi-head attention
    mha(M.HeadsSplitHeadMinor),
    mha(M.ScaleByModelWidth),
    mha(M.KeyPaddingMaskInverted, caught=("forward output", "finite output")),
    mha(M.AttentionWeightsSummedOverHeads, caught=("attention weights",), passes=FWD),
    mha(M.BiasKVMaskedOut, caught=(*FWD, "finite output", "attention weights")),
    mha(M.CausalBottomRight, caught=("forward output", "finite output")),
    mha(M.FastPathDropsMask, caught=("eval-mode output",), passes=FWD),
    # cross-entropy
    # these two need class weights, reduction "mean" and one kind of target at once: under the
    # defaults they are caught with most seeds but not seed 0 (docs/oracle.md has the rates); a
    # user who wrote the weighted mean focuses the check there
    ce(L.ce_weighted_mean_divides_by_count, **focused("index_targets")),
    # caught by 22 of 32 unfocused runs (24 of 32 before the kernel-sized tier), not seed 0:
    # checked where its author would focus, the ignored targets of a mean
    ce(L.ce_mean_counts_ignored_targets, caught=("forward output", "finite output"),
       features=["index_targets", "ignore_index"], reductions=["mean"]),
    ce(L.ce_smoothing_includes_ignored_targets),
    ce(L.ce_smoothing_over_other_classes),
    ce(L.ce_smoothing_ignores_class_weights),
    ce(L.ce_prob_targets_mean_by_weight_sum, **focused("prob_targets")),
    ce(L.ce_without_max_subtraction, caught=("finite output", "grad wrt input")),
    ce(L.ce_softmax_over_last_axis),
    ce(L.ce_reduction_none_returns_sum, caught=("output shape",)),
    ce(L.ce_mean_grad_not_divided, caught=("grad wrt input",), passes=FWD),
    ce(L.ce_none_grad_reads_one_upstream, caught=("grad wrt input",), passes=FWD),
    ce(L.ce_language_model_path_grad_over_logits, caught=("grad wrt input",), passes=FWD),
    # mean squared error
    mse(L.mse_mean_divides_by_batch, caught=(*FWD, "grad wrt input", "grad wrt target")),
    mse(L.mse_grad_missing_factor_two, caught=("grad wrt input", "grad wrt target"),
        passes=FWD),
    mse(L.mse_target_grad_wrong_sign, caught=("grad wrt target",),
        passes=(*FWD, "grad wrt input")),
    mse(L.mse_default_reduction_sum),
    mse(L.mse_expanded_square, caught=(*FWD, "grad wrt input", "grad wrt target")),
    # SGD
    opt(O.SGDDampensFirstStep, "sgd", caught=("parameters", "state 'momentum_buffer'")),
    opt(O.SGDNesterovStepsWithBuffer, "sgd"),
    opt(O.SGDDecayOutsideMomentum, "sgd", caught=("parameters", "state 'momentum_buffer'")),
    opt(O.SGDMaximizeFlipsDecay, "sgd", caught=("parameters", "state 'momentum_buffer'")),
    opt(O.SGDMomentumOutsideState, "sgd"),
    # Adam / AdamW
    opt(O.AdamEpsInsideSqrt, "adam"),
    opt(O.AdamNoBiasCorrection, "adam"),
    opt(O.AdamBiasCorrectionStepAhead, "adam"),
    opt(O.AdamSecondCorrectionNotRooted, "adam"),
    opt(O.AdamAmsgradMaxUnused, "adam"),
    opt(O.AdamMaximizeFlipsTheStep, "adam", caught=("state 'exp_avg'",)),
    opt(O.AdamWCoupledDecay, "adamw", caught=("parameters", "state 'exp_avg'")),
    opt(O.AdamWDecayNotScaledByLr, "adamw"),
    opt(O.AdamWDecayAfterUpdate, "adamw"),
    opt(O.AdamWStepsOnMissingGrads, "adamw",
        caught=("parameters", "state 'step'", "state 'exp_avg'", "state 'exp_avg_sq'")),
    # Muon
    opt(O.MuonNsCoefficientTypo, "muon"),
    opt(O.MuonWithoutNesterov, "muon"),
    opt(O.MuonAdjustsLrByColumnsOverRows, "muon"),
    opt(O.MuonDecaysWithTheAdjustedLr, "muon"),
    # Adafactor
    opt(O.AdafactorBeta2ForTheNewTerm, "adafactor"),
    opt(O.AdafactorConstantBeta2, "adafactor"),
    opt(O.AdafactorUnfactored, "adafactor"),
    opt(O.AdafactorEpsInsideTheMoments, "adafactor"),
    opt(O.AdafactorAbsoluteStepSize, "adafactor"),
    opt(O.AdafactorWithoutUpdateClipping, "adafactor"),
    # optimizer state and missing gradients
    opt(O.AdamWKeepsLaterGroupsStateAside, "adamw", caught=(
        "state 'exp_avg'", "state 'exp_avg_sq'", "state 'step'"), passes=("parameters",),
        state_dict_round_trip=False),
    opt(O.AdamWStepCountedPerGroup, "adamw", caught=("parameters", "state 'step'")),
    # wrong only on the default call (docs/oracle.md, "The default call")
    opt(O.AdamDefaultBetasTypo, "adam"),
    opt(O.AdamWDefaultBetasTypo, "adamw"),
    # wrong only past a tile, chunk, buffer or vector width (docs/oracle.md, "Kernel-sized
    # inputs")
    sdpa(K.tiles_of_64_output_not_rescaled),
    sdpa(K.tiles_of_128_sum_not_rescaled),
    sdpa(K.causal_mask_from_a_cached_buffer_of_256),
    sdpa(K.query_grad_keeps_the_last_key_tile_of_64, caught=("grad wrt query",),
         passes=(*FWD, "grad wrt key", "grad wrt value")),
    ce(K.ce_vocab_chunks_of_128_merged_by_max),
    ce(K.ce_vocab_chunks_of_256_local_softmax_grad, caught=("grad wrt input",), passes=FWD),
    ce(K.ce_row_groups_of_32_mean_of_means),
    mse(K.mse_blocks_of_1024_drop_the_tail),
    mha(K.KeyPaddingMaskReadInChunksOf32),
    mha(K.CausalMaskFromABufferOf128),
    opt(K.AdamWSimd8TailSkipsDecay, "adamw"),
    opt(K.AdamSimd16TailStaleMoment, "adam"),
    opt(K.SGDMomentumChunksOf1024, "sgd", caught=("parameters", "state 'momentum_buffer'")),
    # wrong only on the default path of a kernel
    sdpa(K.sdpa_plain_call_heads_and_queries_swapped),
    sdpa(K.sdpa_causal_self_attention_value_grad_unmasked, caught=("grad wrt value",),
         passes=FWD),
    ce(K.ce_language_model_path_ignores_the_upstream_grad, caught=("grad wrt input",),
       passes=FWD),
    mse(K.mse_default_call_drops_the_target_grad, caught=("grad wrt target",), passes=FWD),
    opt(K.AdamDefaultHyperEpsInsideSqrt, "adam"),
    opt(K.SGDPlainStepUsesTheFirstGroupsLr, "sgd"),
    # wrong in how the call is treated: the caller's inputs, the no-grad path, NaN gradients
    sdpa(CM.sdpa_scales_the_query_in_place, caught=("inputs unchanged",), passes=(*FWD, *QKV)),
    ce(CM.ce_log_softmax_into_the_logits, caught=("inputs unchanged",),
       passes=(*FWD, "grad wrt input")),
    ce(CM.ce_inference_path_drops_label_smoothing, caught=("no-grad output",),
       passes=(*FWD, "grad wrt input")),
    Mutant(CM.softmax_inference_path_without_the_shift, check_softmax, ("no-grad output",),
           (*FWD, "grad wrt input")),
    Mutant(CM.softmax_backward_recomputed_without_the_shift, check_softmax,
           ("finite gradients",), FWD),
    # gradient clipping by the global norm
    clip(CG.clip_inf_norm_is_one, caught=("total norm", "clipped gradients")),
    clip(CG.clip_coefficient_not_capped, caught=("clipped gradients",), passes=("total norm",)),
    clip(CG.clip_reads_the_parameters_twice, caught=("clipped gradients",),
         passes=("total norm",)),
    clip(CG.clip_returns_the_clipped_norm, caught=("total norm",),
         passes=("clipped gradients",)),
    clip(CG.clip_sums_the_tensor_norms, caught=("total norm", "clipped gradients")),
    clip(CG.clip_ignores_error_if_nonfinite, caught=("raises on a non-finite norm",)),
    clip(CG.clip_crashes_on_missing_grads, caught=("raises on valid input",)),
    # RMSNorm
    rms(N.rms_eps_outside_sqrt, caught=(*FWD, "grad wrt input", "grad wrt weight")),
    rms(N.rms_default_eps_of_the_input_dtype, caught=(*FWD, "grad wrt input"), **BF16),
    rms(N.rms_variance_in_low_precision, caught=(*FWD, "grad wrt input"), **BF16),
    rms(N.rms_weight_grad_reduced_in_low_precision, caught=("grad wrt weight",),
        passes=(*FWD, "grad wrt input"), **BF16),
    rms(N.rms_gemma_offset_forgotten, features=["weight_offset"]),
    rms(N.rms_residual_returns_the_old_residual, caught=("new residual",), passes=FWD, **FUSED),
    rms(N.rms_residual_normalises_the_input, passes=("new residual",), **FUSED),
    rms(N.rms_residual_added_in_bfloat16, caught=(*FWD, "new residual"), **FUSED),
    rms(N.rms_residual_added_in_place, caught=("inputs unchanged",),
        passes=(*FWD, "new residual"), **FUSED),
    rms(N.rms_residual_backward_drops_the_residual_grad,
        caught=("grad wrt input", "grad wrt residual"), passes=(*FWD, "new residual"), **FUSED),
    # LayerNorm
    ln(N.ln_one_pass_variance, caught=(*FWD, "grad wrt input", "grad wrt weight")),
    ln(N.ln_unbiased_variance, caught=(*FWD, "grad wrt input", "grad wrt weight")),
    ln(N.ln_bias_grad_averaged_over_rows, caught=("grad wrt bias",),
       passes=(*FWD, "grad wrt input", "grad wrt weight")),
    # SwiGLU / GeGLU
    glu(G.swiglu_gate_and_up_swapped),
    glu(G.swiglu_with_gelu),
    glu(G.swiglu_backward_without_the_slope_term, caught=("grad wrt gate",),
        passes=(*FWD, "grad wrt up")),
    glu(G.swiglu_exp_overflows_in_backward, caught=("finite gradients",), passes=FWD),
    glu(G.geglu_tanh_form_for_exact, activation="gelu"),
    # RoPE
    rot(R.rope_backward_not_transposed, caught=("grad wrt x",), passes=FWD),
    rot(R.rope_tables_in_input_dtype, **BF16),
    rot(R.rope_layouts_swapped),
    rot(R.rope_offset_ignored),
    rot(R.rope_rotates_every_feature),
    rot(R.rope_rotates_backwards),
    # fused linear cross-entropy
    lce(C.lce_padded_vocab_slots_in_the_lse),
    lce(C.lce_mean_counts_ignored_targets),
    lce(C.lce_chunks_of_256_not_rescaled),
    lce(C.lce_none_ignores_the_per_row_upstream_grad,
        caught=("grad wrt input", "grad wrt linear_weight"), passes=FWD),
]
SLOW = {"KeyPaddingMaskReadInChunksOf32", "SGDMomentumChunksOf1024",
        "flash_running_max_starts_at_minus_1e4", "head_dim_past_128_truncated"}
"""Mutants that only the random kernel-sized tier or an input regime reaches (no fixed example
does): caught with some seeds, not all (docs/oracle.md has the rates); their corpus test runs
under -m slow, over seeds 0..7."""

CORRECT = [
    *(Mutant(f, check_sdpa, ()) for f in A.CORRECT),
    *(Mutant(f, check_cross_entropy, ()) for f in L.CORRECT_CE),
    *(Mutant(f, check_mse, ()) for f in L.CORRECT_MSE),
    *(Mutant(f, check_clip_grad_norm, ()) for f in CG.CORRECT),
    *(Mutant(f, check_rms_norm, (), kwargs=kw) for f in N.CORRECT_RMS
      for kw in ({}, BF16, {"features": ["weight_offset", "eps"]})),
    *(Mutant(f, check_rms_norm, (), kwargs={**FUSED, **kw}) for f in N.CORRECT_RESIDUAL
      for kw in ({}, BF16)),
    *(Mutant(f, check_layer_norm, (), kwargs=kw) for f in N.CORRECT_LN for kw in ({}, BF16)),
    *(Mutant(f, check_swiglu, (), kwargs=kw) for f in G.CORRECT for kw in ({}, BF16)),
    *(Mutant(f, check_rope, (), kwargs=kw) for f in R.CORRECT for kw in ({}, BF16)),
    *(Mutant(f, check_linear_cross_entropy, (), kwargs=kw) for f in C.CORRECT
      for kw in ({}, BF16)),
    *(Mutant(c, check_multihead_attention, ()) for c in M.CORRECT),
    *(Mutant(c, check_optimizer, (), kwargs={"like": like})
      for like, c in O.CORRECT.items()),
]


RETRY_SEEDS = (1, 2)
"""Seeds tried after seed 0. A mutant caught by 14 of 16 seeds can miss seed 0, and which ones do
changes whenever a strategy draws differently (the scale regimes took a share of the draws and
two mutants of 13/16 and 14/16 flipped): so the corpus test asks for a catch within three
seeds, each a default-size check, and the catch-rate table (docs/oracle.md) gives the rates."""


def run(mutant: Mutant, seed: int = 0, **options: Any):
    """The mutant's check (no shrinking) with ``seed``; ``options`` (e.g. ``examples``) on top."""
    with settings_profile(phases=[Phase.explicit, Phase.reuse, Phase.generate]), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch's MHA warnings about masks of mixed kinds
        return mutant.check(mutant.target, seed=seed, raise_on_failure=False,
                            **{**mutant.kwargs, **options})


class settings_profile:
    """The active Hypothesis profile with ``options`` on top, for one block."""

    def __init__(self, **options: Any):
        self.options = options

    def __enter__(self) -> None:
        self.previous = settings.default
        settings.register_profile("refllm-mutants", self.previous, **self.options)
        settings.load_profile("refllm-mutants")

    def __exit__(self, *exc: object) -> None:
        settings.register_profile("refllm-mutants-previous", self.previous)
        settings.load_profile("refllm-mutants-previous")


def caught(mutant: Mutant, report: Any) -> bool:
    """The report failed, on one of the properties the mutant's bug breaks."""
    return not report.passed and bool(set(report.failed_properties) & set(mutant.caught))


def assert_caught(mutant: Mutant, report: Any) -> None:
    assert not report.passed, f"{mutant.name} was not caught:\n{report}"
    failed = set(report.failed_properties)
    assert failed & set(mutant.caught), f"{mutant.name}: expected one of {mutant.caught}, " \
                                        f"got {sorted(failed)}"
    for name in mutant.passes:
        assert report.property(name).passed, f"{mutant.name}: {name} should pass\n{report}"
    assert report.snippet


@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.name not in SLOW],
                         ids=lambda m: m.name)
def test_the_oracle_catches_the_planted_bug_on_the_property_it_breaks(mutant):
    report = run(mutant)
    for seed in RETRY_SEEDS:  # the first seed that catches it (most: seed 0)
        if caught(mutant, report):
            break
        report = run(mutant, seed)
    assert_caught(mutant, report)


@pytest.mark.slow
@pytest.mark.parametrize("mutant", [m for m in MUTANTS if m.name in SLOW], ids=lambda m: m.name)
def test_the_random_kernel_sized_tier_catches_a_bug_past_a_width_in_a_quarter_of_runs(mutant):
    reports = [run(mutant, seed) for seed in range(8)]
    hits = [r for r in reports if caught(mutant, r)]
    assert len(hits) >= 2, f"{mutant.name}: caught with {len(hits)} of 8 seeds"
    assert_caught(mutant, hits[0])


@pytest.mark.parametrize("correct", CORRECT, ids=lambda m: m.name)
def test_the_correct_versions_the_mutants_derive_from_pass(correct):
    # on small inputs here (a blockwise kernel of 2-key blocks takes 2 s over the kernel-sized
    # ones); the slow variant below adds them
    report = run(correct, contract=Contract(long_axes=False))
    assert report.passed, str(report)


@pytest.mark.slow
@pytest.mark.parametrize("correct", CORRECT, ids=lambda m: m.name)
def test_the_correct_versions_pass_on_kernel_sized_inputs_too(correct):
    report = run(correct)
    assert report.passed, str(report)


def test_the_corpus_covers_every_op_family_with_at_least_55_mutants():
    checks = {m.check for m in MUTANTS}
    assert checks == {check_sdpa, check_cross_entropy, check_mse, check_multihead_attention,
                      check_optimizer, check_softmax, check_clip_grad_norm, check_rms_norm,
                      check_layer_norm, check_swiglu, check_rope, check_linear_cross_entropy}
    assert len(MUTANTS) >= 55
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
