import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.model import GPT, GPTConfig, KVCache
from refllm.testing import check_kv_cache
from refllm.testing.engine.compare import assert_close
from tests.model.strategies import build, configs, token_ids


def left_padding_mask(lengths: list[int], t: int) -> torch.Tensor:
    """(b, t) bool, True on the last ``lengths[row]`` positions of each row."""
    return torch.arange(t)[None, :] >= t - torch.tensor(lengths)[:, None]


@st.composite
def decoding_cases(draw, block=None):
    """A tiny model, ids (b, T), a left-padding mask (or None) and the chunk sizes of steps."""
    config = draw(configs(n_ctx_min=2, block=block))
    b, total = draw(st.integers(1, 3)), draw(st.integers(2, config.n_ctx))
    idx = token_ids(draw, config, b, total)
    mask = None
    if draw(st.booleans()):
        mask = left_padding_mask([draw(st.integers(1, total)) for _ in range(b)], total)
    chunks, left = [], total
    while left:
        chunks.append(draw(st.integers(1, left)) if chunks else draw(st.integers(1, left - 1)))
        left -= chunks[-1]
    return config, idx, mask, chunks


@pytest.mark.parametrize("block", [None, "gpt2", "llama"], ids=["any", "gpt2", "llama"])
@given(data=st.data())
def test_cached_decoding_equals_the_full_forward(block, data):
    config, idx, mask, chunks = data.draw(decoding_cases(block))
    model = build(config)
    full = model(idx, attention_mask=mask)
    cache, pieces, start = KVCache(), [], 0
    for n in chunks:
        step_mask = None if mask is None else mask[:, :start + n]
        pieces.append(model(idx[:, start:start + n], attention_mask=step_mask, cache=cache))
        assert pieces[-1].shape == (idx.shape[0], n, config.vocab_size)
        start += n
    assert_close(torch.cat(pieces, dim=1), full)
    b, total = idx.shape
    assert cache.length == total
    assert all(k.shape == (b, config.n_kv_head_, total, config.d_head) for k in cache.keys)
    real = mask.sum(1) if mask is not None else torch.full((b,), total)
    assert torch.equal(cache.next_position, real)


def test_a_call_rejected_for_bad_input_leaves_the_cache_as_it_was():
    model = GPT(GPTConfig(vocab_size=7, n_ctx=4, n_layer=1, n_head=1, d_model=4)).eval()
    cache = KVCache()
    model(torch.tensor([[1, 2]]), attention_mask=torch.tensor([[False, True]]), cache=cache)
    keys, mask = cache.keys[0].clone(), cache.mask.clone()
    bad_calls = [
        dict(attention_mask=torch.tensor([[True, True, True]])),  # differs from the cached mask
        dict(attention_mask=torch.tensor([[True]])),  # not over all keys so far
    ]
    for kwargs in bad_calls:
        with pytest.raises(ValueError, match="attention_mask"):
            model(torch.tensor([[3]]), cache=cache, **kwargs)
    with pytest.raises(ValueError, match=r"idx has 3 positions and the cache 2: 5 exceeds"):
        model(torch.tensor([[3, 4, 5]]), cache=cache)
    with pytest.raises(ValueError, match="batch size 2 but the cache holds 1"):
        model(torch.tensor([[3], [4]]), cache=cache)
    assert torch.equal(cache.keys[0], keys) and torch.equal(cache.mask, mask)
    model(torch.tensor([[3, 4]]), cache=cache)  # up to n_ctx = 4 keys is fine
    assert cache.length == 4 and cache.next_position.tolist() == [3]


def test_the_cache_refuses_layers_out_of_order():
    cache = KVCache()
    with pytest.raises(ValueError, match="layer must be <= 0"):
        cache.append(1, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))


@pytest.mark.parametrize("change", [dict(), dict(n_kv_head=1), dict(rope_scaling={
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 4})], ids=["llama", "llama-gqa", "llama-rope-scaling"])
def test_the_oracle_passes_the_llama_block(change):
    torch.manual_seed(0)
    model = GPT(GPTConfig.llama(vocab_size=13, n_ctx=16, n_layer=2, n_head=2, d_model=16,
                                init_std=0.5, **change))
    report = check_kv_cache(model, examples=10, seed=0, raise_on_failure=False)
    assert report.passed, str(report)
