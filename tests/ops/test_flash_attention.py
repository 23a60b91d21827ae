"""Tiled (FlashAttention-2) attention: equal to the naive reference in values and gradients, for any
tiling; O(t·d) saved for the backward; selectable in the MHA module and the GPT model."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from refllm.model import GPT, GPTConfig
from refllm.nn.multihead import MultiheadAttention
from refllm.ops.attention import scaled_dot_product_attention, scaled_dot_product_attention_naive
from refllm.ops.flash_attention import _Plan, flash_attention
from refllm.testing import assert_close
from refllm.testing.engine.case import Case
from refllm.testing.sdpa.strategy import sdpa_cases

F64 = torch.float64
ALIGNMENTS = st.sampled_from(["top_left", "bottom_right"])


def _short_cases(max_size: int):
    """Cases with every axis <= max_size, no kernel-sized tier: these tests draw the tile sizes
    themselves (1..9, 16, 64, 128), so short lengths already span one, many and ragged tiles, and
    the naive loops and gradcheck grow with t * s."""
    return sdpa_cases(max_batch_dims=1, max_size=max_size, long_axes=False, scales=False)


BLOCKS = st.one_of(st.integers(1, 9), st.sampled_from([16, 64, 128]))  # 1..9 and larger


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


_MASK = torch.tensor([[True, False, True, False], [False, False, False, False], [True] * 4])
FULLY_MASKED_ROW = Case((_randn(2, 3, 3), _randn(2, 4, 3, seed=1), _randn(2, 4, 2, seed=2)),
                        {"attn_mask": _MASK})
FLOAT_MASK_INF_ROW = Case(FULLY_MASKED_ROW.args,
                          {"attn_mask": torch.zeros(3, 4, dtype=F64).masked_fill(~_MASK, -1e999)})
GQA_3_TO_1 = Case((_randn(3, 2, 3), _randn(1, 4, 3, seed=1), _randn(1, 4, 2, seed=2)),
                  {"enable_gqa": True})
LONG_CAUSAL = Case((_randn(2, 11, 3), _randn(2, 7, 3, seed=1), _randn(2, 7, 2, seed=2)),
                   {"is_causal": True})  # t > s: bottom-right leaves the first 4 queries empty


def _values_and_grads(fn, case, **kw):
    """fn's output and its gradients wrt q, k, v (and a float attn_mask) for a fixed dO."""
    args = [x.detach().clone().requires_grad_() for x in case.args]
    kwargs = dict(case.kwargs)
    mask = kwargs.get("attn_mask")
    if mask is not None and mask.dtype != torch.bool:
        kwargs["attn_mask"] = mask = mask.detach().clone().requires_grad_()
        args.append(mask)
    out = fn(*args[:3], **kwargs, **kw)
    grads = torch.autograd.grad(out, args, _randn(*out.shape, seed=7))
    return out, grads


@given(case=_short_cases(5), alignment=ALIGNMENTS, block_q=BLOCKS,
       block_k=BLOCKS)
@example(case=FULLY_MASKED_ROW, alignment="top_left", block_q=2, block_k=3)
@example(case=FLOAT_MASK_INF_ROW, alignment="top_left", block_q=1, block_k=1)
@example(case=GQA_3_TO_1, alignment="top_left", block_q=2, block_k=3)
@example(case=LONG_CAUSAL, alignment="bottom_right", block_q=3, block_k=2)
@example(case=LONG_CAUSAL, alignment="top_left", block_q=4, block_k=64)
def test_flash_equals_naive_in_values_and_gradients_for_any_tiling(case, alignment, block_q,
                                                                   block_k):
    out, grads = _values_and_grads(flash_attention, case, causal_alignment=alignment,
                                   block_q=block_q, block_k=block_k)
    ref, ref_grads = _values_and_grads(scaled_dot_product_attention_naive, case,
                                       causal_alignment=alignment)
    assert_close(out, ref)
    for got, want in zip(grads, ref_grads, strict=True):  # q, k, v (and a float mask)
        assert_close(got, want)


@settings(max_examples=20)
@given(case=_short_cases(3), alignment=ALIGNMENTS,
       data=st.data(), t=st.integers(10, 40), s=st.integers(10, 40))
def test_flash_equals_the_fast_path_on_many_tiles_of_odd_lengths(case, alignment, data, t, s):
    """Lengths up to 40 with tiles of 1..9: many tiles, ragged last tiles. The fast path stands in
    for the naive loops here (it equals them: tests/ops/test_attention.py)."""
    q, k, v = case.args
    q = torch.cat([q] * (t // q.shape[-2] + 1), dim=-2)[..., :t, :]  # longer, same structure
    k, v = (torch.cat([x] * (s // x.shape[-2] + 1), dim=-2)[..., :s, :] for x in (k, v))
    q, k, v = q + _randn(*q.shape), k + _randn(*k.shape, seed=1), v + _randn(*v.shape, seed=2)
    kwargs = {key: val for key, val in case.kwargs.items() if key != "attn_mask"}
    if "is_causal" not in kwargs and data.draw(st.booleans()):
        kwargs["attn_mask"] = torch.rand(t, s, generator=torch.Generator().manual_seed(t)) < 0.6
    long = Case((q, k, v), kwargs)
    block = {"block_q": data.draw(st.integers(1, 9)), "block_k": data.draw(st.integers(1, 9))}
    out, grads = _values_and_grads(flash_attention, long, causal_alignment=alignment, **block)
    ref, ref_grads = _values_and_grads(scaled_dot_product_attention, long,
                                       causal_alignment=alignment)
    assert_close(out, ref)
    for got, want in zip(grads, ref_grads, strict=True):
        assert_close(got, want)


@settings(max_examples=15)
@given(case=_short_cases(3), block_q=st.integers(1, 3),
       block_k=st.integers(1, 3))
@example(case=FULLY_MASKED_ROW, block_q=2, block_k=2)
@example(case=Case(FLOAT_MASK_INF_ROW.args[:2] + (FLOAT_MASK_INF_ROW.args[2],),
                   {"attn_mask": _randn(1, 4, seed=3), "scale": 0.7}), block_q=2, block_k=3)
def test_gradcheck_in_float64_masks_included(case, block_q, block_k):
    args = [x.detach().clone().requires_grad_() for x in case.args]
    mask = case.kwargs.get("attn_mask")
    grad_mask = mask is not None and mask.dtype != torch.bool and bool(mask.isfinite().all())
    if grad_mask:  # an additive mask's gradient too (finite masks: -inf has no finite difference)
        args.append(mask.detach().clone().requires_grad_())

    def fn(q, k, v, *m):
        kwargs = {**case.kwargs, **({"attn_mask": m[0]} if m else {})}
        return flash_attention(q, k, v, **kwargs, block_q=block_q, block_k=block_k)

    assert torch.autograd.gradcheck(fn, tuple(args))


def test_a_fully_masked_query_gets_zeros_and_zero_gradients():
    for case in (FULLY_MASKED_ROW, FLOAT_MASK_INF_ROW):
        q, k, v = (x.detach().clone().requires_grad_() for x in case.args)
        out = flash_attention(q, k, v, **case.kwargs, block_q=2, block_k=2)
        assert out[:, 1].abs().sum() == 0 and torch.isfinite(out).all()
        out.sum().backward()
        assert q.grad[:, 1].abs().sum() == 0
        assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


def _largest_saved(fn, *args) -> int:
    """The element count of the largest tensor autograd saves while ``fn(*args)`` runs."""
    sizes = [0]

    def pack(x):
        sizes.append(x.numel())
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn(*args)
    return max(sizes)


@pytest.mark.parametrize("causal", [False, True])
def test_the_graph_saves_no_t_by_s_matrix(causal):
    b, h, t, s, d = 2, 3, 96, 80, 4
    q, k, v = (_randn(b, h, n, d, seed=i).requires_grad_() for i, n in enumerate((t, s, s)))
    flash = _largest_saved(lambda *a: flash_attention(*a, is_causal=causal, block_q=16,
                                                      block_k=16), q, k, v)
    assert flash <= b * h * max(t, s) * d  # q, k, v, O and L: O(t·d)
    fast = _largest_saved(lambda *a: scaled_dot_product_attention(*a, is_causal=causal), q, k, v)
    assert fast >= b * h * t * s  # the hook does see a (t, s) matrix where there is one


def test_causal_tiles_wholly_in_the_future_are_skipped():
    plan = _Plan(t=32, s=32, bq=8, bk=8, offset=0, scale=1.0, full=(32, 32), heads=(1, 1, 1))
    visited = [(i0, j0) for i0, i1 in plan.query_tiles() for j0, _ in plan.key_tiles(i0, i1)]
    assert len(visited) == 10 and all(j0 <= i0 for i0, j0 in visited)  # 4 * 5 / 2 of 16
    bottom = dataclasses.replace(plan, s=16, offset=16 - 32)  # t > s: the first 16 see nothing
    assert [list(bottom.key_tiles(i0, i1)) for i0, i1 in bottom.query_tiles()][:2] == [[], []]


def test_bad_arguments_are_refused_with_the_argument_named():
    q = k = v = _randn(3, 2)
    with pytest.raises(ValueError, match="dropout_p=0 only"):
        flash_attention(q, k, v, dropout_p=0.1)
    with pytest.raises(ValueError, match="block_q"):
        flash_attention(q, k, v, block_q=0)
    with pytest.raises(TypeError, match="block_k"):
        flash_attention(q, k, v, block_k=2.0)
    with pytest.raises(TypeError, match="attn_mask"):  # the shared SDPA checks
        flash_attention(q, k, v, attn_mask=torch.zeros(3, 3, dtype=torch.int64))
    q = q.requires_grad_()
    out = flash_attention(q, k, v)
    (grad,) = torch.autograd.grad(out.sum(), q, create_graph=True)
    assert not grad.requires_grad  # no double backward (a documented deviation), never a wrong one


# --------------------------------------------------------------- selectable where SDPA is used


def test_the_mha_module_with_the_flash_backend_equals_the_fast_one():
    torch.manual_seed(0)
    fast = MultiheadAttention(8, 2, batch_first=True, dtype=F64)
    flash = MultiheadAttention(8, 2, batch_first=True, dtype=F64, backend="flash")
    flash.load_state_dict(fast.state_dict())
    x = _randn(2, 5, 8)
    pad = torch.tensor([[False] * 5, [True, True, False, False, False]])
    for kw in ({}, {"key_padding_mask": pad}):
        assert_close(flash(x, x, x, need_weights=False, **kw)[0],
                     fast(x, x, x, need_weights=False, **kw)[0])
    with pytest.raises(ValueError, match="need_weights"):
        flash(x, x, x)
    with pytest.raises(ValueError, match="dropout"):
        MultiheadAttention(8, 2, dropout=0.1, backend="flash")


CONFIG = GPTConfig(vocab_size=16, n_ctx=8, n_layer=2, n_head=4, d_model=16, n_kv_head=2,
                   positions="rope")


def test_the_gpt_model_with_flash_attention_gives_the_reference_logits_in_float64():
    idx = torch.randint(0, 16, (3, 8), generator=torch.Generator().manual_seed(0))
    pad = torch.ones(3, 8, dtype=torch.bool)
    pad[1, :3] = False  # left padding: the bool-mask path
    logits = {}
    for attention in ("reference", "flash"):
        torch.manual_seed(0)
        model = GPT(dataclasses.replace(CONFIG, attention=attention)).to(F64).eval()
        logits[attention] = (model(idx), model(idx, attention_mask=pad))
    for got, want in zip(logits["flash"], logits["reference"]):
        assert_close(got, want)
    with pytest.raises(ValueError, match="dropout"):
        dataclasses.replace(CONFIG, attention="flash", dropout=0.1)


def _losses(config: GPTConfig, steps: int = 4) -> torch.Tensor:
    torch.manual_seed(0)
    model = GPT(config).train()
    idx = torch.randint(0, 16, (4, 9), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out = []
    for _ in range(steps):
        loss = F.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(loss.item())
    return torch.tensor(out, dtype=F64)


def test_the_gpt_model_trains_alike_on_flash_and_reference_attention_in_float32():
    """Tolerance: float32's row (see tests/model/test_backends_train_alike.py for the margin)."""
    flash = _losses(dataclasses.replace(CONFIG, attention="flash"))
    reference = _losses(dataclasses.replace(CONFIG, attention="reference"))
    assert_close(flash, reference, kind="impl", dtype=torch.float32)
    assert reference[-1] < reference[0] - 0.1  # it trains
