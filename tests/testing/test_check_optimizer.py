"""check_optimizer's claims about state, param groups, missing gradients and the state_dict round
trip: a report compares state only where the target keeps it, says "not kept" otherwise, fails a
state dropped for some parameters, and can leave the mid-run round trip out."""

import math

import pytest
import torch
from hypothesis import given, seed, settings

from refllm.testing import check_optimizer
from refllm.testing.optimizer.check import NotKept
from refllm.testing.optimizer.strategy import optimizer_problems
from tests.testing.mutants import optim_mutants as O

MOMENTS = ("state 'exp_avg'", "state 'exp_avg_sq'", "state 'step'")


def test_a_target_that_keeps_its_state_under_other_names_gets_not_kept_rows_never_passed():
    report = check_optimizer(O.AdamWStateUnderOtherNames, like="adamw", seed=0, examples=10)
    assert report.passed  # its parameters are right
    for name in MOMENTS:
        row = report.property(name)
        assert isinstance(row, NotKept) and row.status == "not kept" and not row.passed
        assert row.failures == 0
    rows = {line.split("  ")[1]: line for line in report.table().splitlines()[1:]}
    for name in MOMENTS:
        assert "not kept" in rows[name] and "passed" not in rows[name]


def test_a_target_that_keeps_torchs_state_gets_passed_rows():
    report = check_optimizer(torch.optim.AdamW, like="adamw", seed=0, examples=10)
    for name in MOMENTS:
        assert report.property(name).status == "passed"


def test_state_kept_for_the_first_param_group_only_fails_as_dropped():
    # its parameters move correctly; without the round trip (which loses the state kept aside)
    # nothing but the state comparison can see it
    report = check_optimizer(O.AdamWKeepsLaterGroupsStateAside, like="adamw", seed=0,
                             state_dict_round_trip=False, raise_on_failure=False)
    assert not report.passed and report.property("parameters").passed
    assert set(report.failed_properties) & set(MOMENTS)
    assert "state dropped" in str(report)


def test_without_the_round_trip_a_functional_optimizer_with_its_state_aside_is_judged():
    # momentum kept outside self.state: the round trip loses it (a failure of the parameters);
    # without it the parameters pass and the momentum buffer is "not kept"
    with_trip = check_optimizer(O.SGDMomentumOutsideState, like="sgd", seed=0,
                                raise_on_failure=False)
    assert "parameters" in with_trip.failed_properties
    without = check_optimizer(O.SGDMomentumOutsideState, like="sgd", seed=0,
                              state_dict_round_trip=False)
    assert without.passed
    assert without.property("state 'momentum_buffer'").status == "not kept"


def test_state_dict_round_trip_must_be_a_bool():
    with pytest.raises(TypeError, match="state_dict_round_trip must be a bool, got 'no'"):
        check_optimizer(torch.optim.SGD, like="sgd", state_dict_round_trip="no")


def test_a_step_counted_per_param_group_fails_where_a_parameter_missed_a_step():
    report = check_optimizer(O.AdamWStepCountedPerGroup, like="adamw", seed=0,
                             raise_on_failure=False)
    assert set(report.failed_properties) & {"parameters", "state 'step'"}


@pytest.mark.parametrize("like", ["sgd", "adamw", "muon", "adafactor"])
def test_param_groups_differ_beyond_the_learning_rate_and_gradients_go_missing(like):
    # measured over 200 draws (seed 0): 15% to 25% of problems have two groups that differ in a
    # hyper-parameter other than lr, about a third have a parameter that never gets a gradient
    counts = {"problems": 0, "differ": 0, "never": 0, "skips": 0}

    @seed(0)
    @settings(max_examples=200, database=None)
    @given(optimizer_problems(like=like))
    def draw(problem):
        counts["problems"] += 1
        rest = [{k: v for k, v in h.items() if k != "lr"} for h in problem.hyper]
        counts["differ"] += any(r != rest[0] for r in rest[1:])
        missing = [[g is None for g in row] for row in problem.grads]
        never = [all(col) for col in zip(*missing)]
        counts["never"] += any(never)
        counts["skips"] += any(m and not n for row in missing for m, n in zip(row, never))

    draw()
    n = counts["problems"]
    assert counts["differ"] >= 0.1 * n and counts["never"] >= 0.1 * n
    assert counts["skips"] >= 0.1 * n, counts


def test_a_contract_says_where_adams_eps_goes_and_the_reference_follows():
    # heavyball floors the denominator at eps (tests/testing/test_real_kernels.py); torch adds
    # eps, so under adam_eps="floor" torch.optim.AdamW is the one that disagrees
    from refllm.testing.contract import Contract

    floor = Contract(adam_eps="floor")
    report = check_optimizer(torch.optim.AdamW, like="adamw", contract=floor, seed=0,
                             examples=15, raise_on_failure=False)
    assert report.failed_properties == ["parameters"]
    assert "adam_eps='floor'" in report.snippet
    # the shrunk problem passes with torch's placement (and may pass with others: it is small)
    assert report.diagnosis[0] == ("passes if eps is added after the bias correction "
                                   "(PyTorch's): Contract(adam_eps='after_correction')")
    assert check_optimizer(torch.optim.AdamW, like="adamw", seed=0, examples=8).passed


def test_adam_eps_is_refused_where_it_means_nothing():
    from refllm.testing import check_sdpa
    from refllm.testing.contract import Contract

    with pytest.raises(ValueError, match="adam_eps must be one of"):
        Contract(adam_eps="inside_the_root")
    with pytest.raises(ValueError, match="adam_eps='floor' applies to like 'adam' or 'adamw'"):
        check_optimizer(torch.optim.SGD, like="sgd", contract=Contract(adam_eps="floor"))
    with pytest.raises(ValueError, match=r"\['adam_eps'\] do not apply to sdpa"):
        check_sdpa(torch.nn.functional.scaled_dot_product_attention,
                   contract=Contract(adam_eps="floor"))


class _KerasStyleAdamW(O.AdamW):
    """AdamW with eps added to sqrt(v) before the bias correction (Keras's and Kingma & Ba
    §2's ordering: lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)): a convention."""

    def denominator(self, v, c2, group):
        return (v.sqrt() + group["eps"]) / math.sqrt(c2)


def test_eps_before_the_bias_correction_is_a_convention_the_contract_states():
    from refllm.testing.contract import Contract

    report = check_optimizer(_KerasStyleAdamW, like="adamw", seed=0, examples=10,
                             raise_on_failure=False)
    assert report.failed_properties == ["parameters"]
    assert ("passes if eps is added before the bias correction (Kingma & Ba §2, Keras): "
            "Contract(adam_eps='before_correction')") in report.diagnosis
    keras = Contract(adam_eps="before_correction")
    assert check_optimizer(_KerasStyleAdamW, like="adamw", contract=keras, seed=0,
                           examples=8).passed
