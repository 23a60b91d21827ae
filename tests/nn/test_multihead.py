"""refllm.nn.MultiheadAttention against torch.nn.MultiheadAttention loaded with the same weights.

Rows where some head has every key masked are left out of the comparison of values (PyTorch gives
NaN there, refllm zeros; see docs/ops/multihead.md); gradients are compared on cases without such
rows, because PyTorch's NaN spreads to every gradient.
"""

import dataclasses

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.nn.multihead import MultiheadAttention
from refllm.testing import assert_close
from refllm.testing.multihead.strategy import MultiheadCase, multihead_cases

F64 = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")


def _run(module, case: MultiheadCase, dtype, grad: bool):
    """Output, weights and (if grad) gradients wrt inputs and parameters, rows kept in float64."""
    c = case.to(dtype)
    query, key, value = c.forward.args
    inputs = [query] if key is query else [query, key, value]
    inputs = [x.detach().clone().requires_grad_(grad) for x in inputs]
    args = inputs * 3 if len(inputs) == 1 else inputs
    out, w = module(*args, **c.forward.kwargs)
    keep = ~case.fully_masked_rows()  # (b, t) batch-first, or (t,)
    rows = out if query.ndim == 2 or module.batch_first else out.transpose(0, 1)
    rows = rows[keep]
    if w is not None and w.ndim != keep.ndim + 1:  # per head: (..., h, t, s') -> (..., t, s', h)
        w = w.movedim(-3, -1)
    kept_w = None if w is None else w[keep]
    grads = []
    if grad:
        loss = (rows * torch.linspace(-1, 1, rows.numel(), dtype=dtype).reshape(rows.shape)).sum()
        if kept_w is not None:
            loss = loss + (kept_w * torch.linspace(1, 2, kept_w.numel(),
                                                   dtype=dtype).reshape(kept_w.shape)).sum()
        params = [p for _, p in sorted(module.named_parameters())]
        grads = torch.autograd.grad(loss, [*inputs, *params])
    return rows, kept_w, grads


def _for_torch(case: MultiheadCase) -> MultiheadCase:
    """The case without the is_causal hint where PyTorch's answer depends on its path.

    With is_causal=True, need_weights=False and no key_padding_mask PyTorch drops attn_mask and
    applies a causal mask over s + 1 keys, hiding the bias_k or zero-attention key from early
    queries; with need_weights=True it uses attn_mask, which lets them through (Deviation in
    docs/ops/multihead.md). refllm always uses attn_mask, as PyTorch does without the hint.
    """
    kw = case.forward.kwargs
    extra = case.init_kwargs["add_bias_kv"] or case.init_kwargs["add_zero_attn"]
    if kw.get("is_causal") and extra and not kw["need_weights"] and \
            kw.get("key_padding_mask") is None:
        forward = dataclasses.replace(case.forward, kwargs={**kw, "is_causal": False})
        return dataclasses.replace(case, forward=forward)
    return case


def _torch_and_refllm(case, dtype, train: bool, grad: bool):
    theirs = case.build(dtype=dtype).train(train)
    mine = case.build(MultiheadAttention, dtype=dtype).train(train)
    return _run(theirs, _for_torch(case), dtype, grad), _run(mine, case, dtype, grad)


def _cases(dtype: torch.dtype):
    """Kernel-sized cases (a long t or s) in float64 only: float32's rounding error grows with the
    length of a reduction (a bias gradient summed over 1022 rows differed by 3e-5), past the
    table's float32 row, which is for short reductions."""
    return multihead_cases(long_axes=dtype == F64)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@given(data=st.data())
def test_equals_torch_in_training_mode_with_gradients(data, dtype):
    case = data.draw(_cases(dtype), "case")
    grad = not bool(case.fully_masked_rows().any())
    ref = _run(case.build(MultiheadAttention, dtype=F64), case, F64, grad)
    for got in _torch_and_refllm(case, dtype, train=True, grad=grad):
        assert_close(got[0], ref[0], kind="impl", dtype=dtype, msg=case.forward.note)
        if ref[1] is not None:
            assert_close(got[1], ref[1], kind="impl", dtype=dtype)
        for g, r in zip(got[2], ref[2]):
            assert_close(g, r, kind="impl", dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@given(data=st.data())
def test_equals_torch_in_eval_mode_without_grad_its_fast_path_included(data, dtype):
    case = data.draw(_cases(dtype), "case")
    ref = _run(case.build(MultiheadAttention, dtype=F64).eval(), case, F64, grad=False)
    with torch.no_grad():
        theirs, mine = _torch_and_refllm(case, dtype, train=False, grad=False)
    for got in (theirs, mine):
        assert_close(got[0], ref[0], kind="impl", dtype=dtype)
        if ref[1] is not None:
            assert_close(got[1], ref[1], kind="impl", dtype=dtype)


@given(st.sampled_from([(4, 2, None, None, False, False, True), (6, 3, 2, 5, True, True, False),
                        (4, 1, 4, 3, True, False, True), (2, 2, None, 2, False, True, False)]),
       st.booleans(), st.integers(0, 2**31))
def test_the_state_dict_round_trips_both_ways_and_one_seed_gives_torchs_init(cfg, which, seed):
    c, h, kdim, vdim, bias_kv, zero_attn, bias = cfg
    kw = dict(embed_dim=c, num_heads=h, kdim=kdim, vdim=vdim, add_bias_kv=bias_kv,
              add_zero_attn=zero_attn, bias=bias, dtype=F64)
    torch.manual_seed(seed)
    theirs = torch.nn.MultiheadAttention(**kw)
    torch.manual_seed(seed)
    mine = MultiheadAttention(**kw)
    assert list(theirs.state_dict()) == list(mine.state_dict())
    for name, w in theirs.state_dict().items():
        assert torch.equal(w, mine.state_dict()[name]), name
    src, dst = (theirs, mine) if which else (mine, theirs)
    with torch.no_grad():
        for p in src.parameters():
            p.normal_()
    dst.load_state_dict(src.state_dict())
    assert all(torch.equal(w, dst.state_dict()[n]) for n, w in src.state_dict().items())


def test_dropout_is_reproducible_with_the_generator_and_off_in_eval_mode():
    torch.manual_seed(0)
    m = MultiheadAttention(4, 2, dropout=0.5, batch_first=True, dtype=F64)
    x = torch.randn(2, 3, 4, dtype=F64)
    m.generator = torch.Generator().manual_seed(1)
    a, wa = m(x, x, x, average_attn_weights=False)
    m.generator = torch.Generator().manual_seed(1)
    b, wb = m(x, x, x, average_attn_weights=False)
    assert torch.equal(a, b) and torch.equal(wa, wb)
    assert bool((wa == 0).any())  # some weights dropped
    no_dropout = MultiheadAttention(4, 2, batch_first=True, dtype=F64)
    no_dropout.load_state_dict(m.state_dict())
    assert torch.equal(m.eval()(x, x, x)[0], no_dropout(x, x, x)[0])


@pytest.mark.parametrize("kwargs, match", [
    (dict(embed_dim=6, num_heads=4), r"embed_dim \(6\) must be divisible by num_heads \(4\)"),
    (dict(embed_dim=0, num_heads=1), r"embed_dim and num_heads must be greater than 0"),
    (dict(embed_dim=4, num_heads=2, dropout=1.0), r"dropout must lie in \[0, 1\)"),
])
def test_a_bad_configuration_is_a_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiheadAttention(**kwargs)


@pytest.mark.parametrize("need_weights", [True, False])
def test_equals_torchs_eval_fast_path_on_batch_first_self_attention(need_weights):
    # eval mode, no grad, batch_first, query is key is value, even heads: PyTorch's fused kernel
    torch.manual_seed(0)
    theirs = torch.nn.MultiheadAttention(4, 2, batch_first=True).eval()
    mine = MultiheadAttention(4, 2, batch_first=True).eval()
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, 4)
    kpm = torch.tensor([[False, False, True], [True, True, True]])  # batch 1: every key padded
    with torch.no_grad():
        out_t, w_t = theirs(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
        out_m, w_m = mine(x, x, x, key_padding_mask=kpm, need_weights=need_weights)
    ref, w_ref = mine.double()(x.double(), x.double(), x.double(), key_padding_mask=kpm,
                               need_weights=need_weights)
    assert_close(out_t[0], ref[0], kind="impl", dtype=torch.float32)
    assert_close(out_m, ref, kind="impl", dtype=torch.float32)
    assert bool(out_t[1].isnan().all())  # PyTorch: NaN for fully masked rows; refllm: zeros
    assert_close(out_m[1], torch.zeros(3, 4))
    if need_weights:
        assert_close(w_t[0], w_ref[0], kind="impl", dtype=torch.float32)
        assert_close(w_m, w_ref, kind="impl", dtype=torch.float32)
