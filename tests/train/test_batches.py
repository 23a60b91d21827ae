"""Batches: a function of (seed, step); targets are the inputs shifted by one; a fixed val slice."""

import numpy as np
import pytest
import torch

from refllm.train.batches import check_fits, shard, train_batch, val_windows

TOKENS = np.arange(1000) % 251


def test_a_batch_is_a_function_of_the_seed_and_the_step():
    a = train_batch(TOKENS, seed=3, step=7, batch_size=4, seq_len=8)
    b = train_batch(TOKENS, seed=3, step=7, batch_size=4, seq_len=8)
    c = train_batch(TOKENS, seed=3, step=8, batch_size=4, seq_len=8)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_targets_are_the_next_tokens_of_a_window_of_the_corpus():
    tokens = np.arange(500)
    idx, targets = train_batch(tokens, seed=0, step=0, batch_size=16, seq_len=10)
    assert idx.dtype == targets.dtype == torch.int64 and idx.shape == (16, 10)
    assert torch.equal(targets[:, :-1], idx[:, 1:])
    assert torch.equal(targets[:, -1], idx[:, -1] + 1)
    assert int(targets.max()) <= 499  # the last window ends inside the corpus


def test_every_window_start_is_drawn():
    tokens = np.arange(12)
    starts = {int(train_batch(tokens, seed=0, step=s, batch_size=8, seq_len=4)[0][i, 0])
              for s in range(50) for i in range(8)}
    assert starts == set(range(12 - 4))


def test_the_validation_slice_is_the_leading_non_overlapping_windows():
    idx, targets = val_windows(np.arange(100), seq_len=10, eval_tokens=35)
    assert idx.shape == (3, 10)
    assert torch.equal(idx.flatten(), torch.arange(30))
    assert torch.equal(targets.flatten(), torch.arange(1, 31))


def test_the_shards_of_all_processes_make_the_global_batch():
    x = torch.arange(24).reshape(8, 3)
    assert torch.equal(torch.cat([shard(x, r, 4) for r in range(4)]), x)


def test_a_batch_larger_than_the_corpus_is_refused():
    with pytest.raises(ValueError, match="larger than the training split"):
        check_fits(100, 50, batch_size=8, seq_len=16)
    with pytest.raises(ValueError, match="validation split has 10 tokens"):
        check_fits(1000, 10, batch_size=2, seq_len=16)
