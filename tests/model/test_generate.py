import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from refllm.model import GPT, GPTConfig, generate
from tests.model.strategies import build, configs, token_ids
from tests.model.test_kv_cache import left_padding_mask

CFG = GPTConfig(vocab_size=11, n_ctx=8, n_layer=2, n_head=2, d_model=8, init_std=0.5)

# each example runs several forwards: half the profile's examples keep the file fast
FEWER = settings(max_examples=max(1, settings.default.max_examples // 2))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@st.composite
def prompts(draw):
    config = draw(configs(n_ctx_min=2))
    b, t0 = draw(st.integers(1, 3)), draw(st.integers(1, config.n_ctx - 1))
    idx = token_ids(draw, config, b, t0)
    mask = left_padding_mask([draw(st.integers(1, t0)) for _ in range(b)], t0)
    n = draw(st.integers(1, config.n_ctx - t0 + 1))
    sampling = dict(temperature=draw(st.sampled_from([0.5, 1.0, 2.0])),
                    top_k=draw(st.sampled_from([None, 1, 3])),
                    top_p=draw(st.sampled_from([None, 0.5, 0.9])))
    return config, idx, draw(st.sampled_from([None, mask])), n, sampling


@FEWER
@given(prompts(), st.integers(0, 2**31))
def test_seeded_sampling_is_reproducible_and_the_cache_does_not_change_the_tokens(case, seed):
    config, idx, mask, n, sampling = case
    model = build(config)
    runs = [generate(model, idx, n, attention_mask=mask, use_cache=c, generator=seeded(seed),
                     **sampling) for c in (True, False, True)]
    assert runs[0].shape == (idx.shape[0], idx.shape[1] + n)
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])


@FEWER
@given(prompts())
def test_a_left_padded_batch_generates_what_each_row_generates_alone(case):
    config, idx, mask, n, _ = case
    mask = torch.ones_like(idx, dtype=torch.bool) if mask is None else mask
    model = build(config)
    out = generate(model, idx, n, attention_mask=mask, greedy=True)
    for row in range(idx.shape[0]):
        alone = generate(model, idx[row:row + 1, mask[row]], n, greedy=True)
        assert torch.equal(out[row, idx.shape[1]:], alone[0, -n:])


def test_greedy_picks_the_argmax_of_the_full_forward_and_equals_top_k_one_and_zero_temperature():
    model = build(CFG)
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    out = generate(model, idx, 5, greedy=True)
    for t in range(3, 8):
        assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))
    assert torch.equal(generate(model, idx, 5, temperature=0.0), out)
    assert torch.equal(generate(model, idx, 5, top_k=1, generator=seeded(3)), out)


def test_stop_tokens_finish_a_row_and_end_generation_when_all_rows_are_done():
    model = build(CFG)
    idx = torch.tensor([[1, 2, 3], [4, 5, 6]])
    free = generate(model, idx, 5, greedy=True)
    first = int(free[0, 3])
    assert first != int(free[1, 3]), "pick prompts whose first greedy tokens differ"
    stopped = generate(model, idx, 5, greedy=True, stop_tokens=[first])
    assert torch.equal(stopped[1], free[1][:stopped.shape[1]])  # row 1 runs on
    assert (stopped[0, 3:] == first).all()  # row 0 is done: it repeats its stop token
    both = generate(model, idx, 5, greedy=True, stop_tokens=[first, int(free[1, 3])])
    assert both.shape == (2, 4)  # every row done after one token: generation ends


def test_crop_keeps_the_last_n_ctx_tokens_and_is_otherwise_an_error():
    model = build(CFG)
    idx = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with pytest.raises(ValueError, match=r"would read 9 > n_ctx=8.*crop=True"):
        generate(model, idx, 4, greedy=True)
    out = generate(model, idx, 6, greedy=True, crop=True)
    for t in range(6, 12):
        assert torch.equal(out[:, t], model(out[:, max(0, t - 8):t])[:, -1].argmax(-1))
    assert torch.equal(generate(model, idx, 6, greedy=True, crop=True, use_cache=False), out)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(model=CFG), TypeError, "model must be a refllm GPT"),
    (dict(prompt_ids=torch.zeros(1, 0, dtype=torch.int64)), ValueError, "prompt_ids must hold"),
    (dict(prompt_ids=torch.tensor([[1, 11]])), ValueError, "prompt_ids holds token id 11"),
    (dict(prompt_ids=torch.tensor([[1.0]])), TypeError, "prompt_ids must be an int64"),
    (dict(max_new_tokens=-1), ValueError, "max_new_tokens must be >= 0"),
    (dict(temperature=-1.0), ValueError, "temperature must lie in"),
    (dict(top_k=0), ValueError, "top_k must be >= 1"),
    (dict(top_p=0.0), ValueError, "top_p must lie in"),
    (dict(top_p=1.5), ValueError, "top_p must lie in"),
    (dict(greedy=1), TypeError, "greedy must be a bool"),
    (dict(stop_tokens=[11]), ValueError, "stop_tokens must lie in"),
    (dict(stop_tokens=["a"]), TypeError, "stop_tokens must be an int"),
    (dict(generator=0), TypeError, "generator must be a torch.Generator"),
    (dict(attention_mask=torch.ones(1, 2)), TypeError, "attention_mask must be a bool"),
])
def test_bad_generation_arguments_raise_errors_naming_them(kwargs, error, words):
    args = dict(model=GPT(CFG), prompt_ids=torch.tensor([[1, 2]]), max_new_tokens=2, **{})
    args.update(kwargs)
    with pytest.raises(error, match=words):
        generate(args.pop("model"), args.pop("prompt_ids"), args.pop("max_new_tokens"), **args)
