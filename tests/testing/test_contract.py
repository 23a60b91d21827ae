"""A `Contract` refuses contradictions, and the checks draw only inside it."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import Phase

from refllm.testing.contract import Contract
from refllm.testing.cross_entropy.check import check_cross_entropy
from refllm.testing.cross_entropy.strategy import cross_entropy_cases
from refllm.testing.mse.check import check_mse
from refllm.testing.multihead.check import check_multihead_attention
from refllm.testing.optimizer.check import check_optimizer
from refllm.testing.optimizer.strategy import optimizer_problems
from refllm.testing.sdpa.check import SDPA_FEATURES, check_sdpa, sdpa_options
from refllm.testing.sdpa.strategy import sdpa_cases
from tests.testing.mutants.test_mutants import settings_profile
from tests.testing.test_size_tier import draw_many

NO_SHRINK = {"phases": [Phase.explicit, Phase.reuse, Phase.generate]}
"""A failing check here needs its verdict, not its shrunk example (test_engine covers that)."""

# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"layout": "bshd"}, "layout"),
    ({"head_dims": ()}, "head_dims"),
    ({"head_dims": (64, 0)}, "head_dims"),
    ({"masks": "float"}, "masks"),
    ({"causal": "always"}, "causal"),
    ({"fully_masked_rows": "ones"}, "fully_masked_rows"),
    ({"max_seq": 0}, "max_seq"),
    ({"dtypes": ()}, "dtypes"),
    ({"dtypes": (torch.int64,)}, "dtypes"),
    ({"sizes": {"q": (1, 2)}}, "unknown axis 'q'"),
    ({"sizes": {"t": (8, 4)}}, "low > high"),
    ({"sizes": {"t": (1,)}}, r"sizes\['t'\]"),
    ({"causal": "only", "masks": "bool"}, "causal='only' contradicts masks='bool'"),
    ({"causal": "only", "fully_masked_rows": "nan"}, "fully_masked_rows='nan'"),
    ({"max_seq": 128, "sizes": {"t": (256, 512)}}, "max_seq"),
    ({"head_dims": (64,), "sizes": {"d": (8, 32)}}, "head_dims"),
    ({"sizes": {"t": (64, 128), "s": (64, 128)}, "head_dims": (64,), "budget": 1000},
     "budget = 1000 elements is below the smallest input"),
])
def test_a_contradictory_or_malformed_contract_is_a_value_error_naming_the_fields(kwargs, named):
    with pytest.raises(ValueError, match=named):
        Contract(**kwargs)


@pytest.mark.parametrize("kwargs", [{"gqa": "yes"}, {"budget": 1.5}, {"unsupported": (42,)},
                                    {"sizes": {"t": (1.0, 2)}}, {"head_dims": ("64",)}])
def test_a_field_of_the_wrong_type_is_a_type_error(kwargs):
    with pytest.raises(TypeError):
        Contract(**kwargs)


def test_a_contract_normalises_its_fields_and_writes_itself_back():
    c = Contract(head_dims=[128, 64, 64], dtypes=torch.bfloat16, unsupported=KeyError,
                 sizes={"h": (1, 4)})
    assert c.head_dims == (64, 128) and c.dtypes == (torch.bfloat16,)
    assert c.unsupported == (KeyError,)
    assert c.snippet() == ("Contract(head_dims=(64, 128), dtypes=(torch.bfloat16,), "
                           "sizes={'h': (1, 4)}, unsupported=(KeyError,))")
    assert Contract().snippet() == "Contract()"
    assert hash(Contract(head_dims=(64,))) == hash(Contract(head_dims=(64,)))


def test_max_seq_caps_the_sequence_ranges():
    c = Contract(max_seq=512, sizes={"t": (1, 4096)})
    assert c.ranges("sdpa") == {"t": (1, 512), "s": (1, 512)}
    assert c.ranges("cross-entropy") == {}


@pytest.mark.parametrize(("check", "contract", "named"), [
    (lambda c: check_cross_entropy(F.cross_entropy, contract=c), Contract(head_dims=(64,)),
     "head_dims"),
    (lambda c: check_mse(F.mse_loss, contract=c), Contract(causal="only"), "causal"),
    (lambda c: check_sdpa(F.scaled_dot_product_attention, contract=c),
     Contract(params_only=True), "params_only"),
    (lambda c: check_sdpa(F.scaled_dot_product_attention, contract=c),
     Contract(sizes={"classes": (1, 8)}), "classes"),
    (lambda c: check_optimizer(torch.optim.SGD, like="sgd", contract=c), Contract(layout="bhtd"),
     "layout"),
    (lambda c: check_sdpa(F.scaled_dot_product_attention, contract=c, dtype=torch.float32),
     Contract(dtypes=(torch.bfloat16,)), "outside the contract's dtypes"),
    (lambda c: check_multihead_attention(torch.nn.MultiheadAttention, contract=c),
     Contract(fully_masked_rows="nan"), "fully_masked_rows='nan'"),
])
def test_a_field_that_does_not_apply_to_the_op_is_refused_before_any_example(check, contract,
                                                                               named):
    with pytest.raises(ValueError, match=named):
        check(contract)


def test_a_contract_of_another_type_is_a_type_error():
    with pytest.raises(TypeError, match="contract must be"):
        check_mse(F.mse_loss, contract={"dtypes": (torch.float32,)})


# ----------------------------------------------------------------------------- drawing inside


def sdpa_draws(contract: Contract, n: int = 120) -> list[Any]:
    return draw_many(sdpa_cases(**sdpa_options(contract, SDPA_FEATURES)), n)


def test_a_flash_attention_contract_draws_only_what_the_kernel_takes():
    c = Contract(layout="bthd", head_dims=(16, 32), masks="none", causal="only", max_seq=600,
                 sizes={"b": (1, 2), "h": (1, 4)})
    cases = sdpa_draws(c)
    for case in cases:
        q, k, v = case.args
        assert q.dim() == k.dim() == v.dim() == 4
        (b, t, h, d), (_, s, g, _), e = q.shape, k.shape, v.shape[-1]
        assert d == e and d in (16, 32) and 1 <= b <= 2 and 1 <= h <= 4 and h % g == 0
        assert t <= 600 and s <= 600
        assert case.kwargs.get("is_causal") is True and "attn_mask" not in case.kwargs
    assert max(case.args[1].shape[1] for case in cases) > 64  # the long tier, within max_seq


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_bool_and_additive_masks_are_drawn_separately(kind):
    masks = [case.kwargs["attn_mask"] for case in sdpa_draws(Contract(masks=kind))
             if "attn_mask" in case.kwargs]
    assert len(masks) > 20
    assert all((m.dtype == torch.bool) == (kind == "bool") for m in masks)


def test_never_causal_no_gqa_no_scale_are_never_drawn():
    for case in sdpa_draws(Contract(causal="never", gqa=False, scale=False)):
        assert not {"is_causal", "enable_gqa", "scale"} & set(case.kwargs)


def test_fully_masked_rows_avoid_draws_none():
    for case in sdpa_draws(Contract(fully_masked_rows="avoid", masks="bool")):
        m = case.kwargs.get("attn_mask")
        assert m is None or bool(m.any(-1).all())


def test_vocabulary_and_row_ranges_bound_the_cross_entropy_logits():
    c = Contract(sizes={"classes": (1000, 1100), "rows": (1, 8)})
    for case in draw_many(cross_entropy_cases(sizes=c.ranges("cross-entropy")), 60):
        logits = case.args[0]
        classes = logits.shape[0] if logits.dim() == 1 else logits.shape[1]
        assert 1000 <= classes <= 1100 and (logits.dim() == 1 or logits.shape[0] <= 8)


def test_optimizer_problems_without_none_grads_and_within_numel():
    for p in draw_many(optimizer_problems(like="adam", none_grads=False,
                                          sizes={"numel": (10, 300)}), 60):
        assert all(g is not None for row in p.grads for g in row)
        assert all(10 <= x.numel() <= 300 for x in p.params)


# ----------------------------------------------------------------------------- the checks


@pytest.fixture
def no_shrink():
    with settings_profile(**NO_SHRINK):
        yield


def test_check_sdpa_calls_the_target_only_inside_the_contract_and_passes_pytorch():
    c = Contract(layout="bthd", head_dims=(8,), masks="none", causal="only", max_seq=300)
    seen = []

    def bthd_kernel(q, k, v, **kw):
        seen.append((tuple(q.shape), tuple(k.shape), sorted(kw)))
        out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in (q, k, v)), **kw)
        return out.transpose(1, 2)

    report = check_sdpa(bthd_kernel, contract=c, seed=0, examples=25, raise_on_failure=False)
    assert report.passed, str(report)
    assert seen and all("is_causal" in kw and "attn_mask" not in kw and q[-1] == 8
                        and q[1] <= 300 and k[1] <= 300 for q, k, kw in seen)
    assert max(q[1] for q, _, _ in seen) > 64  # a kernel-sized call, within max_seq


@pytest.mark.usefixtures("no_shrink")
def test_a_layout_bug_of_a_bthd_kernel_is_caught():
    def heads_as_queries(q, k, v, **kw):  # treats (b, t, h, d) as (b, h, t, d)
        return F.scaled_dot_product_attention(q, k, v, **kw)

    report = check_sdpa(heads_as_queries, contract=Contract(layout="bthd", masks="none",
                                                            gqa=False),
                        seed=0, examples=20, raise_on_failure=False)
    assert not report.passed and "forward output" in report.failed_properties


def plain_softmax_attention(q, k, v, attn_mask=None, is_causal=False, scale=None,
                            enable_gqa=False):
    """Attention with a plain softmax: a query that sees no key gets 0/0 = NaN."""
    if enable_gqa and k.shape[-3] != q.shape[-3]:
        r = q.shape[-3] // k.shape[-3]
        k, v = k.repeat_interleave(r, -3), v.repeat_interleave(r, -3)
    scores = q @ k.transpose(-1, -2) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if is_causal:
        future = torch.ones(scores.shape[-2:], dtype=torch.bool).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    if attn_mask is not None:
        scores = (scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else scores + attn_mask)
    return torch.softmax(scores, -1) @ v


@pytest.mark.usefixtures("no_shrink")
def test_the_nan_convention_for_fully_masked_rows_is_judged_on_the_other_rows():
    nan = check_sdpa(plain_softmax_attention, contract=Contract(fully_masked_rows="nan"),
                     seed=0, examples=25, raise_on_failure=False)
    assert nan.passed, str(nan)
    zeros = check_sdpa(plain_softmax_attention, seed=0, examples=25, raise_on_failure=False)
    assert not zeros.passed and "finite output" in zeros.failed_properties
    # PyTorch 2.13 gives zeros there, not NaN: under the NaN convention that is a failure
    torch_ = check_sdpa(F.scaled_dot_product_attention, seed=0, examples=25,
                        raise_on_failure=False, contract=Contract(fully_masked_rows="nan"))
    assert not torch_.passed and "NaN" in str(torch_)


@pytest.mark.usefixtures("no_shrink")
def test_a_named_exception_is_reported_as_unsupported_not_as_a_failure():
    class NoMasks(Exception):
        pass

    def maskless(q, k, v, **kw):
        if "attn_mask" in kw:
            raise NoMasks("masks are not supported")
        return F.scaled_dot_product_attention(q, k, v, **kw)

    report = check_sdpa(maskless, contract=Contract(unsupported=(NoMasks,)), seed=0,
                        examples=20, raise_on_failure=False)
    assert report.passed and report.unsupported > 0, str(report)
    plain = check_sdpa(maskless, seed=0, examples=20, raise_on_failure=False)
    assert not plain.passed and "raises on valid input" in plain.failed_properties


@pytest.mark.usefixtures("no_shrink")
def test_params_only_compares_parameters_and_not_state():
    class Doubling(torch.optim.Adam):
        """Right parameters, but its state keeps 2 m under torch's name 'exp_avg'."""

        def step(self, closure=None):
            for state in self.state.values():
                state["exp_avg"].div_(2)
            super().step(closure)
            with torch.no_grad():
                for state in self.state.values():
                    state["exp_avg"].mul_(2)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        strict = check_optimizer(Doubling, like="adam", seed=0, examples=10, steps=(1, 3),
                                 raise_on_failure=False, amsgrad=False)
        loose = check_optimizer(Doubling, like="adam", seed=0, examples=10, steps=(1, 3),
                                raise_on_failure=False, amsgrad=False,
                                contract=Contract(params_only=True))
    assert not strict.passed and "state 'exp_avg'" in strict.failed_properties
    assert loose.passed, str(loose)
