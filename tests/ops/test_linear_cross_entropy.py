"""linear_cross_entropy: chunked == naive == F.linear_cross_entropy (values and gradients), for
every option, chunk sizes that do not divide the rows or the vocabulary, and bad input named."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_naive
from refllm.testing import assert_close

f64 = torch.float64


@st.composite
def problems(draw, dtype=f64):
    lead = draw(st.lists(st.integers(1, 5), min_size=1, max_size=2), label="leading shape")
    d, vocab = draw(st.integers(1, 6), label="d"), draw(st.integers(1, 13), label="V")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))
    scale = 10.0 ** draw(st.floats(-1, 1.5), label="log10 scale")
    h = torch.randn(*lead, d, generator=gen, dtype=f64) * scale
    w = torch.randn(vocab, d, generator=gen, dtype=f64)
    target = torch.randint(0, vocab, tuple(lead), generator=gen)
    if draw(st.booleans(), label="some targets ignored"):
        target[torch.rand(tuple(lead), generator=gen) < 0.3] = -100
    options = {
        "reduction": draw(st.sampled_from(["mean", "sum", "none"]), label="reduction"),
        "label_smoothing": draw(st.sampled_from([0.0, 0.1, 1.0]), label="label_smoothing"),
    }
    if draw(st.booleans(), label="bias"):
        options["linear_bias"] = torch.randn(vocab, generator=gen, dtype=f64)
    if draw(st.booleans(), label="class weights"):
        options["weight"] = torch.rand(vocab, generator=gen, dtype=f64) + 0.1
    chunks = {"chunk_rows": draw(st.integers(1, 4), label="chunk_rows"),
              "chunk_vocab": draw(st.integers(1, 5), label="chunk_vocab")}
    return h.to(dtype), w.to(dtype), target, options, chunks


@given(problems(), st.integers(0, 2**16))
def test_chunked_values_and_gradients_equal_pytorchs_and_the_naive_loss(problem, seed):
    h, w, target, options, chunks = problem
    if options["reduction"] == "mean" and bool((target == -100).all()):
        return  # 0 / 0 (nan), as PyTorch: the all-ignored case has its own test
    leaves = [h.clone().requires_grad_(), w.clone().requires_grad_()]
    if "linear_bias" in options:
        leaves.append(options["linear_bias"].clone().requires_grad_())

    def run(fn, **extra):
        xs = [t.detach().clone().requires_grad_() for t in leaves]
        kw = dict(options, **extra)
        if len(xs) == 3:
            kw["linear_bias"] = xs[2]
        loss = fn(xs[0], xs[1], target, **kw)
        g = torch.randn(loss.shape, generator=torch.Generator().manual_seed(seed), dtype=f64)
        return (loss, *torch.autograd.grad(loss, xs, g))  # a drawn upstream gradient

    def pytorch(h, w, target, **kw):  # F.linear_cross_entropy takes (N, d) or (d): flatten
        loss = F.linear_cross_entropy(h.reshape(-1, h.shape[-1]), w, target.reshape(-1), **kw)
        return loss.reshape(target.shape) if kw["reduction"] == "none" else loss

    ours, theirs = run(linear_cross_entropy, **chunks), run(pytorch)
    for a, e in zip(ours, theirs):
        assert_close(a, e, kind="impl")
    naive = linear_cross_entropy_naive(h, w, target, **options)
    assert_close(ours[0], naive, kind="impl")


def test_the_chunks_do_not_change_the_result_beyond_rounding():
    gen = torch.Generator().manual_seed(0)
    h, w = torch.randn(37, 16, generator=gen), torch.randn(101, 16, generator=gen)
    target = torch.randint(0, 101, (37,), generator=gen)
    whole = linear_cross_entropy(h, w, target, chunk_rows=10**6, chunk_vocab=10**6)
    for rows, vocab in ((1, 1), (7, 13), (36, 100)):
        assert_close(linear_cross_entropy(h, w, target, chunk_rows=rows, chunk_vocab=vocab),
                     whole, kind="impl")


def test_logits_far_beyond_floats_exp_range_stay_finite():
    h = torch.tensor([[1.0], [-1.0]]) * 1e4
    w = torch.tensor([[1.0], [0.5], [-1.0]])
    loss = linear_cross_entropy(h, w, torch.tensor([1, 2]), reduction="none", chunk_vocab=1)
    assert torch.isfinite(loss).all()
    assert_close(loss, F.cross_entropy(h @ w.T, torch.tensor([1, 2]), reduction="none"),
                 kind="impl")


def test_half_precision_is_computed_in_float32_and_returned_in_its_dtype():
    gen = torch.Generator().manual_seed(1)
    h, w = torch.randn(8, 4, generator=gen), torch.randn(11, 4, generator=gen)
    target = torch.randint(0, 11, (8,), generator=gen)
    loss = linear_cross_entropy(h.bfloat16(), w.bfloat16(), target, chunk_vocab=3)
    assert loss.dtype == torch.bfloat16
    exact = F.cross_entropy(h.bfloat16().double() @ w.bfloat16().double().T, target)
    assert abs(loss.double() - exact) <= 2 * torch.finfo(torch.bfloat16).eps * exact


def test_an_all_ignored_batch_is_nan_under_mean_as_pytorch_and_has_a_zero_gradient():
    h = torch.randn(3, 2, requires_grad=True)
    w = torch.randn(4, 2)
    target = torch.full((3,), -100)
    loss = linear_cross_entropy(h, w, target)
    assert loss.isnan() and F.linear_cross_entropy(h, w, target).isnan()
    assert linear_cross_entropy(h, w, target, reduction="sum").item() == 0.0
    (grad,) = torch.autograd.grad(linear_cross_entropy(h, w, target, reduction="sum"), h)
    assert (grad == 0).all()


def test_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(5, 3, generator=gen, dtype=f64, requires_grad=True)
    w = torch.randn(7, 3, generator=gen, dtype=f64, requires_grad=True)
    b = torch.randn(7, generator=gen, dtype=f64, requires_grad=True)
    target = torch.tensor([0, 6, -100, 3, 3])
    assert torch.autograd.gradcheck(
        lambda h, w, b: linear_cross_entropy(h, w, target, linear_bias=b, label_smoothing=0.2,
                                             chunk_rows=2, chunk_vocab=3), (h, w, b))


@pytest.mark.parametrize("call, error, words", [
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 2), torch.zeros(2, dtype=int)),
     ValueError, "same d"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(3, dtype=int)),
     ValueError, "leading shape"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(2, 4)),
     TypeError, "class indices"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3), torch.tensor([0, 4])),
     ValueError, "outside [0, 4)"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3, dtype=f64),
                                  torch.zeros(2, dtype=int)), TypeError, "dtype"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(2, dtype=int),
                                  linear_bias=torch.ones(3)), ValueError, "linear_bias must"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(2, dtype=int),
                                  reduction="avg"), ValueError, "reduction"),
    (lambda: linear_cross_entropy(torch.ones(2, 3), torch.ones(4, 3), torch.zeros(2, dtype=int),
                                  chunk_vocab=0), ValueError, "chunk_vocab"),
])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)


def _peak_bytes_held_by_torch(call) -> int:
    """The running sum of the profiler's allocation events (+bytes, -bytes), its maximum."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    held = peak = 0
    for e in events:
        held += e.nbytes()
        peak = max(peak, held)
    return peak


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_forward_and_backward_hold_the_gradients_and_a_few_chunks_never_the_logits(softcap):
    n, d, vocab, rows, cols = 256, 4, 4096, 64, 1024
    gen = torch.Generator().manual_seed(7)
    h = torch.randn(n, d, generator=gen, requires_grad=True)
    w = torch.randn(vocab, d, generator=gen, requires_grad=True)
    target = torch.randint(0, vocab, (n,), generator=gen)

    def call():
        loss = linear_cross_entropy(h, w, target, chunk_rows=rows, chunk_vocab=cols,
                                    softcap=softcap, z_loss=1e-4)
        return torch.autograd.grad(loss, (h, w))

    call()
    # the gradients of h and W; two (rows x cols) blocks, three with the cap's tanh; a (cols x d)
    # and a (rows x d) product; and at most sixteen int64 vectors of n (losses, lse, masks, ...)
    blocks = 2 if softcap is None else 3
    bound = 4 * ((n + vocab) * d + blocks * rows * cols + (rows + cols) * d) + 16 * 8 * n
    assert bound < n * vocab  # a quarter of the logits' n x V floats (4 bytes each)
    assert _peak_bytes_held_by_torch(call) <= bound


def test_an_all_ignored_mean_is_nan_with_zero_gradients_as_pytorch():
    h = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    y = torch.full((4,), -100)
    loss = linear_cross_entropy(h, w, y)
    loss.backward()
    assert loss.isnan() and not h.grad.any() and not w.grad.any()
    ref = F.linear_cross_entropy(h, w, y)
    assert ref.isnan()
