import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from refllm.model.sampling import top_k_filter, top_k_filter_naive, top_p_filter, top_p_filter_naive

# logits from a small set of values, so that ties are common
tied_logits = st.lists(st.sampled_from([-2.0, -1.0, 0.0, 0.5, 3.0]), min_size=1, max_size=7).map(
    lambda xs: torch.tensor(xs, dtype=torch.float64))
any_logits = st.lists(st.floats(-5, 5), min_size=1, max_size=7).map(
    lambda xs: torch.tensor(xs, dtype=torch.float64))
logits = st.one_of(tied_logits, any_logits)


def group_masses(row: torch.Tensor) -> list[float]:
    """The probability mass strictly above each distinct value and up to it (partial sums)."""
    probs = torch.softmax(row, -1)
    return [float(probs[probs > q].sum()) for q in probs.unique()] + [
        float(probs[probs >= q].sum()) for q in probs.unique()]


@given(logits, st.integers(1, 9))
def test_top_k_fast_equals_naive(row, k):
    assert torch.equal(top_k_filter(row, k), top_k_filter_naive(row, k))


@given(logits, st.integers(1, 9))
def test_top_k_keeps_the_k_largest_and_their_ties(row, k):
    kept = top_k_filter(row, k).isfinite()
    assert kept.sum() >= min(k, row.numel())
    assert row[kept].min() >= row[~kept].max() if (~kept).any() else True
    if row.unique().numel() == row.numel():
        assert kept.sum() == min(k, row.numel())


@given(any_logits)
def test_top_k_of_one_keeps_only_the_argmax(row):
    assume(row.unique().numel() == row.numel())
    assert top_k_filter(row, 1).isfinite().nonzero().flatten().tolist() == [int(row.argmax())]


@given(logits, st.floats(0.01, 1.0))
def test_top_p_fast_equals_naive(row, p):
    assume(all(abs(m - p) > 1e-9 for m in group_masses(row)))  # rounding decides on a boundary
    assert torch.equal(top_p_filter(row, p), top_p_filter_naive(row, p))


@given(logits, st.floats(0.01, 1.0))
def test_top_p_keeps_the_smallest_set_of_most_likely_tokens_with_mass_at_least_p(row, p):
    assume(all(abs(m - p) > 1e-9 for m in group_masses(row)))
    probs = torch.softmax(row, -1)
    kept = top_p_filter(row, p).isfinite()
    assert probs[kept].sum() >= p - 1e-12  # enough mass
    assert probs[kept].min() >= probs[~kept].max() if (~kept).any() else True  # most likely first
    least = probs[kept].min()
    assert probs[kept & (probs > least)].sum() < p  # without the least likely kept: too little
    assert torch.equal(top_p_filter(row, p)[kept], row[kept])  # survivors keep their logits


def test_filters_act_on_the_last_axis_of_a_batch():
    rows = torch.tensor([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], dtype=torch.float64)
    assert top_k_filter(rows, 2).isfinite().tolist() == [[False, True, True], [True, True, False]]
    assert torch.equal(top_p_filter(rows, 0.5), torch.stack([top_p_filter(r, 0.5) for r in rows]))
