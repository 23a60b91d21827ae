"""refllm.nn.optim: SGD, Adam, AdamW, Muon and Adafactor follow torch.optim step for step, state
dicts included."""

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import refllm.optim
from refllm.nn import optim as N
from refllm.testing import assert_close
from refllm.testing.optimizer.strategy import optimizer_problems

F64 = torch.float64
PAIRS = {"sgd": (N.SGD, torch.optim.SGD), "adam": (N.Adam, torch.optim.Adam),
         "adamw": (N.AdamW, torch.optim.AdamW), "muon": (N.Muon, torch.optim.Muon),
         "adafactor": (N.Adafactor, torch.optim.Adafactor)}
NO_FOREACH = ("muon",)  # torch.optim.Muon has no foreach argument


@pytest.mark.parametrize("foreach", [False, True], ids=["for-loop", "foreach"])
@pytest.mark.parametrize("like", sorted(PAIRS))
@given(data=st.data())
def test_the_optimizer_follows_torch_optim_through_a_state_dict_round_trip(like, foreach, data):
    # several param groups, None grads, ≥ 20 steps; the run saves the state dict in the middle,
    # builds a NEW optimizer, loads it and continues (problem.save_load_at)
    if foreach and like in NO_FOREACH:
        pytest.skip("torch.optim.Muon has no foreach path")
    problem = data.draw(optimizer_problems(like=like, steps=(20, 25)))
    ours, theirs = PAIRS[like]
    options = {} if like in NO_FOREACH else {"foreach": foreach}
    # bit for bit (kind="exact"), Adafactor's foreach path to rounding: it orders its operations
    # otherwise (tests/ops/test_optim_adafactor.py)
    kind = "impl" if like == "adafactor" and foreach else "exact"
    problem.run(ours).assert_close(problem.run(theirs, **options), kind=kind)


@pytest.mark.parametrize("like", sorted(PAIRS))
@given(data=st.data())
def test_state_dicts_load_across_refllm_and_torch_both_ways(like, data):
    problem = data.draw(optimizer_problems(like=like, steps=(2, 6), save_load=False))
    ours, theirs = PAIRS[like]
    half = len(problem.grads) // 2

    def run(first, second):
        params = [p.clone() for p in problem.params]
        opt = first(problem.param_groups(params))
        for k, grads in enumerate(problem.grads):
            if k == half:
                saved = copy.deepcopy(opt.state_dict())
                opt = second(problem.param_groups(params))
                opt.load_state_dict(saved)
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
        return params, opt

    expected, t_opt = run(theirs, theirs)
    for first, second in [(ours, theirs), (theirs, ours)]:
        got, opt = run(first, second)
        for p, q in zip(got, expected):
            assert_close(p, q)
        for p, q in zip(opt.param_groups[0]["params"], t_opt.param_groups[0]["params"]):
            assert sorted(opt.state.get(p, {})) == sorted(t_opt.state.get(q, {}))


def test_a_parameter_without_a_gradient_is_untouched_and_gets_no_state():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(3))
    for opt in (N.SGD([a, b], lr=0.1, momentum=0.9), N.Adam([a, b]), N.AdamW([a, b])):
        a.grad, b.grad = torch.ones(2), None
        opt.step()
        assert torch.equal(b, torch.ones(3))
        assert b not in opt.state and a in opt.state


def test_sgd_without_momentum_keeps_no_state_like_torch():
    w = torch.nn.Parameter(torch.ones(2))
    opt, ref = N.SGD([w], lr=0.1), torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    w.grad = ref.param_groups[0]["params"][0].grad = torch.ones(2)
    opt.step(), ref.step()
    assert opt.state_dict()["state"] == ref.state_dict()["state"] == {}


def test_adam_stores_step_as_a_float_tensor_under_torchs_keys():
    w = torch.nn.Parameter(torch.ones(2))
    opt, ref = N.Adam([w], amsgrad=True), torch.optim.Adam([torch.nn.Parameter(torch.ones(2))],
                                                            amsgrad=True)
    w.grad = ref.param_groups[0]["params"][0].grad = torch.ones(2)
    opt.step(), ref.step()
    ours, theirs = opt.state_dict()["state"][0], ref.state_dict()["state"][0]
    assert sorted(ours) == sorted(theirs) == ["exp_avg", "exp_avg_sq", "max_exp_avg_sq", "step"]
    assert ours["step"].dtype == theirs["step"].dtype and ours["step"].ndim == 0
    assert ours["step"].item() == 1.0


@pytest.mark.parametrize("cls", [N.SGD, N.Adam, N.AdamW])
def test_step_evaluates_the_closure_with_grad_enabled_and_returns_its_loss(cls):
    w = torch.nn.Parameter(torch.tensor([3.0], dtype=F64))
    opt = cls([w], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (w**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert_close(loss.detach(), torch.tensor(9.0, dtype=F64))
    assert w.item() < 3.0


@pytest.mark.parametrize("cls", [N.SGD, N.Adam, N.AdamW])
def test_maximize_climbs(cls):
    w = torch.nn.Parameter(torch.tensor([1.0], dtype=F64))
    opt = cls([w], lr=0.1, maximize=True)
    w.grad = torch.tensor([1.0], dtype=F64)
    opt.step()
    assert w.item() > 1.0


@pytest.mark.parametrize("cls, kwargs, match", [
    (N.SGD, {"lr": -1.0}, r"lr must lie in \[0.0, inf\], got -1.0"),
    (N.SGD, {"lr": 0.1, "momentum": -0.1}, r"momentum must lie in"),
    (N.SGD, {"lr": 0.1, "nesterov": True}, r"nesterov momentum requires momentum > 0"),
    (N.Adam, {"betas": (0.9, 1.0)}, r"betas\[1\] must lie in \[0.0, 1.0\)"),
    (N.AdamW, {"eps": -1.0}, r"eps must lie in"),
    (N.AdamW, {"weight_decay": -1.0}, r"weight_decay must lie in"),
])
def test_bad_hyper_parameters_fail_at_construction_naming_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls([torch.nn.Parameter(torch.ones(1))], **kwargs)


def test_refllm_optim_re_exports_the_optimizers_and_schedules():
    assert refllm.optim.AdamW is N.AdamW and refllm.optim.SGD is N.SGD
    assert refllm.optim.Muon is N.Muon and refllm.optim.Adafactor is N.Adafactor
    assert refllm.optim.warmup_cosine(0, max_lr=1.0, min_lr=0.0, warmup_steps=1,
                                      decay_steps=2) == 0.5


def test_a_lambda_lr_scheduler_drives_the_optimizer_along_the_schedule():
    w = torch.nn.Parameter(torch.ones(1))
    opt = refllm.optim.AdamW([w], lr=0.5)
    kw = dict(max_lr=0.5, min_lr=0.05, warmup_steps=3, decay_steps=10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, refllm.optim.as_lr_lambda(refllm.optim.warmup_cosine, base_lr=0.5, **kw))
    for step in range(12):
        lr, expected = opt.param_groups[0]["lr"], refllm.optim.warmup_cosine(step, **kw)
        assert_close(torch.tensor(lr, dtype=F64), torch.tensor(expected, dtype=F64))
        w.grad = torch.ones(1)
        opt.step()
        sched.step()


def test_muon_refuses_a_parameter_that_is_not_a_matrix_naming_it():
    w, b = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match=r"group 0, parameter 1\) must be a 2-D matrix .*"
                                         r"got shape \(3,\)"):
        N.Muon([w, b])
    with pytest.raises(ValueError):  # torch's refuses it too, at construction
        torch.optim.Muon([w, b])


@pytest.mark.parametrize("cls, kwargs, match", [
    (N.Muon, {"ns_steps": -1}, r"ns_steps"),
    (N.Muon, {"adjust_lr_fn": "rms"}, r"adjust_lr_fn"),
    (N.Adafactor, {"beta2_decay": 0.5}, r"beta2_decay must lie in"),
    (N.Adafactor, {"d": 0.5}, r"d must lie in"),
])
def test_bad_muon_and_adafactor_hyper_parameters_name_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls([torch.nn.Parameter(torch.ones(2, 2))], **kwargs)


def test_adafactor_keeps_factored_moments_for_a_matrix_and_a_variance_for_a_vector():
    w, b = torch.nn.Parameter(torch.ones(2, 3)), torch.nn.Parameter(torch.ones(3))
    opt = N.Adafactor([w, b])
    w.grad, b.grad = torch.ones(2, 3), torch.ones(3)
    opt.step()
    assert sorted(opt.state[w]) == ["col_var", "row_var", "step"]
    assert sorted(opt.state[b]) == ["step", "variance"]
    assert opt.state[w]["row_var"].shape == (2, 1) and opt.state[w]["col_var"].shape == (1, 3)
