"""The train/validation split: deterministic, a partition in order, spread through the corpus."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refllm.data.split import split, validation_chunks


@given(st.integers(0, 5000), st.sampled_from([0.0, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.9]),
       st.integers(1, 300))
def test_the_split_is_a_deterministic_partition_that_keeps_chunk_order(n, f, chunk):
    tokens = np.arange(n, dtype=np.int64)
    train, val = split(tokens, f, chunk)
    again = split(tokens, f, chunk)
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    # every token exactly once; each part is increasing (chunks taken in corpus order)
    assert np.array_equal(np.sort(np.concatenate([train, val])), tokens)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    is_val = validation_chunks(n, f, chunk)
    assert is_val.sum() == int(np.floor(is_val.size * f + 1e-9))
    owner = np.repeat(is_val, chunk)[:n]
    assert np.array_equal(val, tokens[owner])


def test_five_percent_is_every_twentieth_chunk():
    assert validation_chunks(100 * 64, 0.05, 64).nonzero()[0].tolist() == [19, 39, 59, 79, 99]


@given(st.integers(200, 5000), st.sampled_from([0.05, 0.1, 0.2]))
def test_validation_chunks_are_spread_through_the_whole_corpus(n_chunks, f):
    where = validation_chunks(n_chunks, f, 1).nonzero()[0]
    gaps = np.diff(np.concatenate([[-1], where, [n_chunks]]))
    assert gaps.max() <= int(np.ceil(1 / f)) + 1  # no stretch of the corpus without validation


def test_bad_split_arguments_are_named():
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0.0, 1.0\), got 1.0"):
        validation_chunks(10, 1.0)
    with pytest.raises(ValueError, match="chunk_tokens must be >= 1, got 0"):
        validation_chunks(10, 0.1, 0)
