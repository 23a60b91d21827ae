"""refllm.ops.multihead: fast == naive, properties, a worked example, gradcheck, bad input."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refllm.ops.multihead import multi_head_attention, multi_head_attention_naive
from refllm.testing import assert_close
from refllm.testing.engine.case import Case
from refllm.testing.multihead.strategy import MultiheadCase, multihead_cases

F64 = torch.float64


def _cases(**kwargs):
    """Short cases only (every axis <= max_size, no kernel-sized tier): refllm's fast path has no
    tiles for a long axis to cross, and the naive loops and gradcheck grow with b * h * t * s
    (refllm against PyTorch's kernels at kernel sizes: tests/nn/test_multihead.py)."""
    return multihead_cases(long_axes=False, **kwargs)


def _both(case: MultiheadCase, **overrides):
    kw = {**case.functional_kwargs(), **overrides}
    args = (*case.forward.args, case.init_kwargs["num_heads"])
    return multi_head_attention(*args, **kw), multi_head_attention_naive(*args, **kw)


PARAMS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias",
          "bias_k", "bias_v", "out_proj_weight", "out_proj_bias")


def _differentiable(fn, case: MultiheadCase):
    """``(f, leaves)``: f(query, key, value, *params) -> the output (and the weights, where
    returned) of fn on the case, and fresh leaves of its inputs and present parameters."""
    kw = case.functional_kwargs()
    names = [n for n in PARAMS if kw.get(n) is not None]
    leaves = [x.detach().clone().requires_grad_() for x in case.forward.args]
    leaves += [kw[n].detach().clone().requires_grad_() for n in names]

    def f(q, k, v, *ps):
        out, w = fn(q, k, v, case.init_kwargs["num_heads"], **{**kw, **dict(zip(names, ps))})
        return out if w is None else (out, w)

    return f, leaves


@given(_cases())
def test_fast_equals_naive_on_any_case(case):
    """Output, weights and the gradients wrt inputs and parameters (the naive gradient is
    gradchecked on the smallest sizes below; this carries it to the larger ones)."""
    (out, weights), (out_n, weights_n) = _both(case)
    assert_close(out, out_n, msg=case.forward.note)
    assert (weights is None) == (weights_n is None) == (not case.forward.kwargs["need_weights"])
    if weights is not None:
        assert_close(weights, weights_n)
    grads = []
    for fn in (multi_head_attention, multi_head_attention_naive):
        f, leaves = _differentiable(fn, case)
        outs = f(*leaves)
        outs = outs if isinstance(outs, tuple) else (outs,)
        # an output or a leaf outside the graph (every key masked) has a zero gradient
        pairs = [(o, _randn_like(o, seed)) for seed, o in enumerate(outs) if o.requires_grad]
        grads.append(torch.autograd.grad([o for o, _ in pairs], leaves, [c for _, c in pairs],
                                         allow_unused=True, materialize_grads=True)
                     if pairs else [torch.zeros_like(x) for x in leaves])
    for got, want in zip(*grads, strict=True):
        assert_close(got, want, msg=case.forward.note)


def _randn_like(x, seed):
    return torch.randn(x.shape, generator=torch.Generator().manual_seed(seed), dtype=x.dtype)


@given(_cases(), st.floats(0.1, 0.9), st.integers(0, 2**31))
def test_fast_and_naive_drop_the_same_weights_given_one_seed(case, p, seed):
    kw = {**case.functional_kwargs(), "dropout_p": p, "need_weights": True,
          "average_attn_weights": False}
    args = (*case.forward.args, case.init_kwargs["num_heads"])
    out, w = multi_head_attention(*args, **kw, generator=torch.Generator().manual_seed(seed))
    out_n, w_n = multi_head_attention_naive(*args, **kw,
                                            generator=torch.Generator().manual_seed(seed))
    assert_close(out, out_n)
    assert_close(w, w_n)
    kept = w[w != 0]  # weights are taken after dropout: 0 or probs / (1 - p)
    assert bool((kept > 0).all())


@given(_cases(need_weights=False, attn_mask=False), st.data())
def test_the_output_does_not_depend_on_the_values_at_padded_keys(case, data):
    query, key, value = (x.clone() for x in case.forward.args)
    unbatched = query.ndim == 2
    bf = case.init_kwargs["batch_first"] or unbatched
    s_axis = 0 if not bf else (0 if unbatched else 1)
    s = key.shape[s_axis]
    b = 1 if unbatched else key.shape[1 - s_axis]
    pad = torch.tensor(data.draw(st.lists(st.booleans(), min_size=b * s, max_size=b * s)))
    pad = pad.reshape(s) if unbatched else pad.reshape(b, s)
    moved = pad if unbatched else (pad if bf else pad.T)  # pad laid out as key's (s, b) axes
    noise = torch.randn(key.shape, dtype=F64) * 100
    key2 = torch.where(moved[..., None], noise, key)
    value2 = torch.where(moved[..., None], torch.randn(value.shape, dtype=F64), value)
    kw = {**case.functional_kwargs(), "key_padding_mask": pad}
    h = case.init_kwargs["num_heads"]
    out, _ = multi_head_attention(query, key, value, h, **kw)
    out2, _ = multi_head_attention(query, key2, value2, h, **kw)
    assert_close(out2, out)


@given(_cases(need_weights=False), st.randoms(use_true_random=False))
def test_permuting_keys_and_values_together_leaves_the_output_unchanged(case, rnd):
    query, key, value = case.forward.args
    unbatched, bf = query.ndim == 2, case.init_kwargs["batch_first"]
    s_axis = 1 if bf and not unbatched else 0
    s = key.shape[s_axis]
    perm = list(range(s))
    rnd.shuffle(perm)
    perm = torch.tensor(perm)
    kw = {**case.functional_kwargs(), "is_causal": False, "need_weights": True,
          "average_attn_weights": False}
    out, w = multi_head_attention(query, key, value, case.init_kwargs["num_heads"], **kw)
    kw2 = dict(kw)
    for name in ("key_padding_mask", "attn_mask"):
        if kw.get(name) is not None:
            kw2[name] = kw[name][..., perm]
    out2, w2 = multi_head_attention(query, key.index_select(s_axis, perm),
                                    value.index_select(s_axis, perm),
                                    case.init_kwargs["num_heads"], **kw2)
    assert_close(out2, out)
    assert_close(w2[..., :s], w[..., :s][..., perm])


@given(_cases(need_weights=False))
def test_averaged_weights_are_the_mean_of_the_per_head_weights(case):
    args = (*case.forward.args, case.init_kwargs["num_heads"])
    kw = {**case.functional_kwargs(), "need_weights": True}
    _, avg = multi_head_attention(*args, **kw, average_attn_weights=True)
    _, per_head = multi_head_attention(*args, **kw, average_attn_weights=False)
    assert_close(avg, per_head.mean(dim=-3))


@given(_cases(need_weights=False))
def test_rows_of_weights_sum_to_one_unless_every_key_is_masked(case):
    args = (*case.forward.args, case.init_kwargs["num_heads"])
    kw = {**case.functional_kwargs(), "need_weights": True, "average_attn_weights": False}
    _, w = multi_head_attention(*args, **kw)  # (b, h, t, s') or (h, t, s')
    sums = w.sum(-1)
    assert bool(((sums - 1).abs() < 1e-12).logical_or(sums == 0).all())
    masked = case.fully_masked_rows()  # (b, t): some head has every key masked
    assert bool((sums.amin(-2) > 0.5)[~masked].all())


@given(_cases())
def test_unbatched_input_equals_a_batch_of_one_and_layouts_agree(case):
    query = case.forward.args[0]
    if query.ndim == 3:
        kw = case.functional_kwargs()
        bf = kw["batch_first"]
        flip = [x.transpose(0, 1) for x in case.forward.args]
        out, w = multi_head_attention(*case.forward.args, case.init_kwargs["num_heads"], **kw)
        out2, w2 = multi_head_attention(*flip, case.init_kwargs["num_heads"],
                                        **{**kw, "batch_first": not bf})
        assert_close(out2.transpose(0, 1), out)
        if w is not None:
            assert_close(w2, w)
        return
    kw = case.functional_kwargs()
    out, w = multi_head_attention(*case.forward.args, case.init_kwargs["num_heads"], **kw)
    kpm = kw.get("key_padding_mask")
    batched = {**kw, "batch_first": True,
               "key_padding_mask": None if kpm is None else kpm[None]}
    out2, w2 = multi_head_attention(*(x[None] for x in case.forward.args),
                                    case.init_kwargs["num_heads"], **batched)
    assert_close(out2[0], out)
    if w is not None:
        assert_close(w2[0], w)


def test_a_worked_example_by_hand():
    # one head, c = 2, identity projections: q = k = v = x; keys (1, 0) and (0, 1).
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)  # (t = s, c), unbatched
    eye = torch.eye(2, dtype=F64)
    w_in = torch.cat([eye, eye, eye])
    for fn in (multi_head_attention, multi_head_attention_naive):
        out, w = fn(x, x, x, 1, in_proj_weight=w_in, out_proj_weight=eye)
        # scores = x x^T / sqrt(2): diagonal 1/sqrt(2), off-diagonal 0
        p = math.exp(1 / math.sqrt(2)) / (math.exp(1 / math.sqrt(2)) + 1)
        expected_w = torch.tensor([[p, 1 - p], [1 - p, p]], dtype=F64)
        assert_close(w, expected_w)
        assert_close(out, expected_w @ x)  # W^O = I
        # key 1 padded: every query sees key 0 only
        out, w = fn(x, x, x, 1, in_proj_weight=w_in, out_proj_weight=eye,
                    key_padding_mask=torch.tensor([False, True]))
        assert_close(out, torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64))


def test_a_query_with_every_key_masked_gets_zeros_and_zero_weights():
    x = torch.randn(2, 1, 4, dtype=F64)
    w_in, w_out = torch.randn(12, 4, dtype=F64), torch.randn(4, 4, dtype=F64)
    mask = torch.tensor([[True, True], [False, True]])  # query 0 sees no key
    for fn in (multi_head_attention, multi_head_attention_naive):
        out, w = fn(x, x, x, 2, in_proj_weight=w_in, out_proj_weight=w_out, attn_mask=mask)
        assert_close(out[0], torch.zeros(1, 4, dtype=F64))
        assert_close(w[0, 0], torch.zeros(2, dtype=F64))


# every axis <= 3 for the fast path; <= 2 for the naive loops, whose gradcheck costs tens of
# thousands of Python-level ops per example at 3 (fast == naive in gradients up to 6: above)
@pytest.mark.parametrize("fn, max_size", [(multi_head_attention, 3),
                                          (multi_head_attention_naive, 2)], ids=["fast", "naive"])
@settings(max_examples=10)
@given(data=st.data())
def test_gradients_pass_float64_gradcheck(fn, max_size, data):
    f, leaves = _differentiable(fn, data.draw(_cases(max_size=max_size), "case"))
    assert torch.autograd.gradcheck(f, tuple(leaves))


def _good():
    x = torch.randn(3, 2, 4, dtype=F64)  # (t, b, c)
    return Case((x, x, x, 2), dict(in_proj_weight=torch.randn(12, 4, dtype=F64),
                                   out_proj_weight=torch.randn(4, 4, dtype=F64)))


BAD = [
    ({"num_heads": 3}, ValueError, r"embed_dim \(query.shape\[-1\] = 4\) must be divisible by "
                                   r"num_heads \(3\)"),
    ({"query": torch.randn(4, dtype=F64)}, ValueError,
     r"query must have 2 or 3 dimensions.*\(4,\)"),
    ({"key": torch.randn(3, 4, dtype=F64)}, ValueError, r"key must have as many dimensions"),
    ({"key": torch.randn(3, 5, 4, dtype=F64), "value": torch.randn(3, 5, 4, dtype=F64)},
     ValueError, r"one batch size.*key tensor of shape \(3, 5, 4\)"),
    ({"value": torch.randn(4, 2, 4, dtype=F64)}, ValueError, r"key and value must have one "
                                                             r"sequence length"),
    ({"query": torch.randn(3, 2, 4)}, TypeError, r"query, key, value must share one dtype"),
    ({"in_proj_weight": torch.randn(8, 4, dtype=F64)}, ValueError,
     r"in_proj_weight must have shape \(12, 4\).*\(8, 4\)"),
    ({"in_proj_weight": None}, ValueError, r"give either in_proj_weight, or all three"),
    ({"q_proj_weight": torch.randn(4, 4, dtype=F64)}, ValueError, r"give either in_proj_weight"),
    ({"out_proj_weight": torch.randn(4, 3, dtype=F64)}, ValueError,
     r"out_proj_weight must have shape \(4, 4\).*\(4, 3\)"),
    ({"in_proj_bias": torch.randn(4, dtype=F64)}, ValueError, r"in_proj_bias must have shape"),
    ({"bias_k": torch.randn(1, 1, 4, dtype=F64)}, ValueError, r"bias_k and bias_v must be given"),
    ({"bias_k": torch.randn(4, dtype=F64), "bias_v": torch.randn(4, dtype=F64)}, ValueError,
     r"bias_k must have shape \(1, 1, 4\).*\(4,\)"),
    ({"key_padding_mask": torch.zeros(2, 4, dtype=torch.bool)}, ValueError,
     r"key_padding_mask must have shape \(2, 3\).*\(2, 4\)"),
    ({"key_padding_mask": torch.zeros(2, 3, dtype=torch.int64)}, TypeError,
     r"key_padding_mask must be bool \(True = ignore"),
    ({"attn_mask": torch.zeros(3, 3, dtype=torch.float32)}, TypeError,
     r"attn_mask must be bool.*float64.*float32"),
    ({"attn_mask": torch.zeros(2, 3, 3, dtype=torch.bool)}, ValueError,
     r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\).*\(2, 3, 3\)"),
    ({"is_causal": True}, ValueError, r"is_causal=True needs attn_mask"),
    ({"is_causal": True, "attn_mask": torch.zeros(3, 3, dtype=torch.bool)}, ValueError,
     r"is_causal=True is a hint that attn_mask is the top-left causal mask"),
    ({"dropout_p": 1.0}, ValueError, r"dropout_p must lie in \[0.0, 1.0\), got 1.0"),
    ({"generator": 3}, TypeError, r"generator must be a torch.Generator"),
    ({"need_weights": 1}, TypeError, r"need_weights must be a bool"),
]


@pytest.mark.parametrize("change, error, match", BAD, ids=[m[:40] for _, _, m in BAD])
@pytest.mark.parametrize("fn", [multi_head_attention, multi_head_attention_naive])
def test_bad_input_is_an_error_that_names_the_argument(fn, change, error, match):
    case = _good()
    names = ("query", "key", "value", "num_heads")
    args = [change.get(n, a) for n, a in zip(names, case.args)]
    kwargs = {**case.kwargs, **{k: v for k, v in change.items() if k not in names}}
    with pytest.raises(error, match=match):
        fn(*args, **kwargs)


def test_kdim_and_vdim_other_than_embed_dim_need_separate_weights():
    q, k, v = torch.randn(3, 2, 4, dtype=F64), torch.randn(5, 2, 3, dtype=F64), \
        torch.randn(5, 2, 6, dtype=F64)
    with pytest.raises(ValueError, match=r"in_proj_weight needs key and value of width"):
        multi_head_attention(q, k, v, 2, in_proj_weight=torch.randn(12, 4, dtype=F64),
                             out_proj_weight=torch.randn(4, 4, dtype=F64))
    with pytest.raises(ValueError, match=r"k_proj_weight must have shape \(4, 3\)"):
        multi_head_attention(q, k, v, 2, q_proj_weight=torch.randn(4, 4, dtype=F64),
                             k_proj_weight=torch.randn(4, 4, dtype=F64),
                             v_proj_weight=torch.randn(4, 6, dtype=F64),
                             out_proj_weight=torch.randn(4, 4, dtype=F64))


@pytest.mark.parametrize("backend, need_weights", [("fast", True), ("fast", False),
                                                   ("flash", False)])
def test_the_arguments_are_checked_once_at_the_public_function(monkeypatch, backend,
                                                               need_weights):
    import importlib

    import refllm.ops._attention_args as sdpa_args
    import refllm.ops.multihead as mha

    calls = {"mha": 0, "sdpa": 0}
    real_mha, real_sdpa = mha.check_mha_args, sdpa_args.check_sdpa_args

    def count(name, real):
        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return counted

    monkeypatch.setattr(mha, "check_mha_args", count("mha", real_mha))
    for name in ("refllm.ops.attention", "refllm.ops.flash_attention"):
        monkeypatch.setattr(importlib.import_module(name), "check_sdpa_args",
                            count("sdpa", real_sdpa))
    x = torch.randn(3, 2, 4, dtype=torch.float64)
    mha.multi_head_attention(x, x, x, 2, in_proj_weight=torch.randn(12, 4, dtype=torch.float64),
                             out_proj_weight=torch.eye(4, dtype=torch.float64),
                             need_weights=need_weights, backend=backend)
    assert calls == {"mha": 1, "sdpa": 0}
