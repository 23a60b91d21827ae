"""It learns: a Markov chain down to its entropy rate, the stdlib corpus steadily, safely."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refllm.data import MarkovSource, load_tokens
from refllm.train import TrainConfig, train

CHAIN = dict(vocab_size=8, seed=0, concentration=0.2)
SOURCE = "markov:vocab=8,seed=0,tokens=200000,concentration=0.2"


def _entropy_bits(p):
    return float(-(p * np.log2(p)).sum())


def test_validation_loss_comes_within_5_percent_of_the_entropy_rate(tmp_path):
    chain = MarkovSource(**CHAIN)
    floor = chain.entropy_rate_bits
    unigram = _entropy_bits(chain.pi)  # what a model that ignores the context reaches
    assert unigram > 1.2 * floor  # so reaching the floor needs the context
    config = TrainConfig(model={"n_layer": 1, "n_head": 2, "d_model": 32}, data=SOURCE,
                         batch_size=16, seq_len=64, max_steps=200, lr=1e-2, warmup_steps=10,
                         log_interval=50, eval_tokens=16384)
    result = train(config, tmp_path, progress=False)
    assert result.status == "ok"
    assert abs(result.final_val_bits / floor - 1) < 0.05, (result.final_val_bits, floor)


STDLIB = dict(data="stdlib", max_bytes=1_000_000, batch_size=8, seq_len=64, max_steps=300,
              lr=3e-3, warmup_steps=30, log_interval=1, eval_tokens=2048)


def test_loss_on_the_stdlib_corpus_falls_monotonically_when_smoothed(tmp_path):
    config = TrainConfig(model={"n_layer": 1, "n_head": 2, "d_model": 32}, **STDLIB)
    result = train(config, tmp_path, progress=False)
    losses = np.array([x for _, x in result.train_losses])
    means = losses.reshape(6, 50).mean(axis=1)  # 50-step means
    assert (np.diff(means) < 0).all(), means
    assert means[-1] < 0.6 * math.log(256)


SAFE_LRS = st.sampled_from([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])  # docs/training.md: safe for AdamW


@st.composite
def small_configs(draw):
    n_head = draw(st.sampled_from([1, 2, 4]))
    model = {"n_layer": draw(st.integers(1, 2)), "n_head": n_head,
             "d_model": n_head * draw(st.sampled_from([4, 8, 16])),
             "positions": draw(st.sampled_from(["learned", "rope"]))}
    batch = draw(st.sampled_from([2, 4, 8]))
    return TrainConfig(model=model, data="stdlib", max_bytes=200_000, batch_size=batch,
                       micro_batch_size=draw(st.sampled_from([batch, batch // 2])),
                       seq_len=draw(st.sampled_from([8, 32])), max_steps=20,
                       lr=draw(SAFE_LRS), warmup_steps=draw(st.integers(0, 5)),
                       grad_clip=draw(st.sampled_from([None, 1.0])), log_interval=1,
                       eval_tokens=256, checkpoint_final=False, seed=draw(st.integers(0, 3)))


def _check_no_divergence(config, tmp_path_factory, data):
    result = train(config, tmp_path_factory.mktemp("run"), data=data, progress=False)
    losses = [x for _, x in result.train_losses]
    assert result.status == "ok" and all(math.isfinite(x) for x in losses), losses
    assert math.isfinite(result.final_val_loss)
    assert losses[-1] < losses[0] + 0.5


@pytest.fixture(scope="module")
def stdlib_small():
    return load_tokens("stdlib", max_bytes=200_000)


@settings(max_examples=6)
@given(config=small_configs())
def test_small_configs_at_safe_learning_rates_do_not_diverge(config, tmp_path_factory,
                                                             stdlib_small):
    _check_no_divergence(config, tmp_path_factory, stdlib_small)


@pytest.mark.slow
@settings(max_examples=60)
@given(config=small_configs())
def test_small_configs_at_safe_learning_rates_do_not_diverge_thoroughly(config, tmp_path_factory,
                                                                        stdlib_small):
    _check_no_divergence(config, tmp_path_factory, stdlib_small)
