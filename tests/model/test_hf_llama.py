"""refllm's Llama block and transformers' LlamaForCausalLM: one function of the same weights.

Offline only: HF_HUB_OFFLINE=1 before transformers is imported, models built from a LlamaConfig
with seeded random weights (no pretrained weights exist here). Logits are compared in float64 with
refllm's "exact" tolerance (rtol = atol = 1e-12).

Hugging Face's Llama computes in float32 in three places even when the model is float64:
``LlamaRotaryEmbedding.forward`` (cos and sin from float32 angles), ``LlamaRMSNorm.forward`` (the
input cast to float32) and the eager attention's softmax (``dtype=torch.float32``); together they
move the logits by about 1e-6. For the float64 comparison, `float64_llama` gives its rotary module
and norms the same formulas computed in float64 (the frequencies from `refllm.ops.rope_scaling`,
held against transformers' own ``ROPE_INIT_FUNCTIONS`` in tests/ops) and the model runs its
"sdpa" attention (no cast). Untouched, it agrees to float32's tolerance
(`test_untouched_llama_agrees_to_float32`).
"""

from __future__ import annotations

import pytest
import torch

from refllm.model import GPT, GPTConfig, generate
from refllm.model.hf import from_hf, to_hf
from refllm.model.hf_llama import (
    from_hf_llama,
    halves_from_pairs,
    llama_config_to_refllm,
    refllm_config_to_llama,
    to_hf_llama,
)
from refllm.ops.rope_scaling import rope_frequencies
from refllm.testing import assert_close, check_kv_cache

V, N = 13, 16
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 4}
YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 4}
LINEAR = {"rope_type": "linear", "factor": 2.0}


@pytest.fixture(scope="module")
def transformers():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield pytest.importorskip("transformers")


def float64_llama(hf, config: GPTConfig):
    """Give ``hf``'s rotary module and RMSNorms their formulas computed in float64 (see the
    module docstring); ``hf`` must run the "sdpa" attention."""
    assert hf.config._attn_implementation == "sdpa"  # the eager softmax is float32
    theta, a = rope_frequencies(config.d_head, config.rope_base, config.rope_scaling_)

    def rotary(x, position_ids):  # HF's halves layout: the angles twice
        freqs = position_ids[..., None].to(torch.float64) * theta  # (b t d/2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return (emb.cos() * a).to(x.dtype), (emb.sin() * a).to(x.dtype)

    def rms_norm(module):
        def forward(x):
            h = x.to(torch.float64)
            return module.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True)
                                                    + module.variance_epsilon)).to(x.dtype)
        return forward

    hf.model.rotary_emb.forward = rotary
    for module in hf.modules():
        if type(module).__name__ == "LlamaRMSNorm":
            module.forward = rms_norm(module)
    return hf


def random_llama(transformers, *, tied=False, n_kv=2, rope=None, attn="sdpa", seed=0):
    """A float64 LlamaForCausalLM with every parameter (the norms too) drawn from a seed."""
    torch.manual_seed(seed)
    params = {"rope_type": "default", **(rope or {}), "rope_theta": 100.0}
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=20,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=n_kv, max_position_embeddings=N,
                                   rope_parameters=params, tie_word_embeddings=tied,
                                   bos_token_id=None, eos_token_id=None,
                                   attn_implementation=attn)
    hf = transformers.LlamaForCausalLM(cfg).double().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.5)
    return hf


def ids(b=2, t=N, seed=1):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


CASES = dict(mha=dict(n_kv=4), gqa=dict(n_kv=2), mqa=dict(n_kv=1), tied=dict(tied=True),
             linear=dict(rope=LINEAR), llama3=dict(rope=LLAMA3), yarn=dict(rope=YARN))


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("attention", ["fused", "reference"])
def test_a_llama_converted_to_refllm_gives_the_same_logits_in_float64(transformers, case,
                                                                      attention):
    hf = random_llama(transformers, **CASES[case])
    model = from_hf_llama(hf, attention=attention)
    float64_llama(hf, model.config)
    x = ids()
    with torch.no_grad():
        assert_close(model(x), hf(x).logits, kind="exact")


@pytest.mark.parametrize("case", ["gqa", "llama3"])
def test_a_refllm_llama_block_converted_to_hf_gives_the_same_logits(transformers, case):
    torch.manual_seed(4)
    rope = CASES[case].get("rope")
    model = GPT(GPTConfig.llama(vocab_size=V, n_ctx=N, n_layer=2, n_head=4, n_kv_head=2,
                                d_model=16, rope_base=100.0, rope_scaling=rope,
                                init_std=0.5)).double().eval()
    hf = to_hf_llama(model, attn_implementation="sdpa")
    assert type(hf).__name__ == "LlamaForCausalLM" and not hf.training
    assert hf.config.intermediate_size == 42 and hf.config.num_key_value_heads == 2
    float64_llama(hf, model.config)
    with torch.no_grad():
        assert_close(hf(ids()).logits, model(ids()), kind="exact")


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_untouched_llama_agrees_to_float32(transformers, attn):
    hf = random_llama(transformers, rope=LLAMA3, attn=attn)
    model = from_hf_llama(hf)
    with torch.no_grad():  # the float32 bound: HF's casts are to float32, the rest is float64
        assert_close(model(ids()), hf(ids()).logits, kind="impl", dtype=torch.float32)


@pytest.mark.parametrize("case", ["gqa", "tied", "yarn"])
def test_both_directions_round_trip_the_weights_and_the_config_exactly(transformers, case):
    hf = random_llama(transformers, **CASES[case])
    model = from_hf_llama(hf)
    back = to_hf_llama(model)
    assert back.state_dict().keys() == hf.state_dict().keys()
    for name, tensor in hf.state_dict().items():
        assert torch.equal(back.state_dict()[name], tensor), name
    assert llama_config_to_refllm(back.config) == model.config
    again = from_hf(to_hf(model))  # the generic functions pick Llama for a RoPE block
    assert again.config == model.config
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_the_permutation_takes_interleaved_pairs_to_halves():
    # a head of width 6: refllm's pairs (0,1), (2,3), (4,5) are HF's (0,3), (1,4), (2,5)
    p = halves_from_pairs(6)
    pairs = torch.tensor([10, 11, 20, 21, 30, 31])
    assert pairs[p].tolist() == [10, 20, 30, 11, 21, 31]
    assert torch.equal(pairs[p][torch.argsort(p)], pairs)


def greedy_hf(hf, prompt, n):
    out = prompt
    with torch.no_grad():
        for _ in range(n):
            out = torch.cat([out, hf(out).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return out


def test_greedy_decoding_gives_the_same_tokens(transformers):
    hf = random_llama(transformers, rope=LLAMA3, seed=5)
    model = from_hf_llama(hf)
    float64_llama(hf, model.config)
    prompt = ids(b=3, t=4, seed=6)
    assert torch.equal(generate(model, prompt, 10, greedy=True), greedy_hf(hf, prompt, 10))


def test_the_kv_cache_check_passes_on_the_converted_model_and_on_hf_llama(transformers):
    hf = random_llama(transformers, rope=LLAMA3, seed=7)
    model = from_hf_llama(hf)
    report = check_kv_cache(model, examples=10, seed=0, raise_on_failure=False)
    assert report.passed, str(report)
    report = check_kv_cache(hf, examples=5, seed=0, raise_on_failure=False)
    assert report.passed, str(report)


def test_a_left_padded_batch_with_mask_and_positions_matches(transformers):
    hf = random_llama(transformers, seed=8)
    model = from_hf_llama(hf)
    float64_llama(hf, model.config)
    x = ids(b=3, t=9, seed=9)
    mask = torch.arange(9)[None, :] >= torch.tensor([[0], [3], [8]])  # 0, 3 and 8 pads
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        theirs = hf(x, attention_mask=mask.long(), position_ids=positions).logits
        ours = model(x, attention_mask=mask)
    assert_close(ours[mask], theirs[mask], kind="exact")  # padded positions are not compared


BASE = dict(vocab_size=V, n_ctx=N, n_layer=1, n_head=2, d_model=8)


@pytest.mark.parametrize("change, message", [
    (dict(bias=True), r"config.bias=False"),
    (dict(positions="learned"), r"config.positions='rope'"),
    (dict(norm="layernorm"), r"config.norm='rmsnorm'"),
    (dict(mlp="gelu"), r"config.mlp='swiglu'"),
    (dict(dropout=0.1), r"config.dropout=0.0"),
])
def test_configs_llama_cannot_express_are_refused(transformers, change, message):
    with pytest.raises(ValueError, match=message):
        refllm_config_to_llama(GPTConfig.llama(**BASE, **change))


@pytest.mark.parametrize("change, message", [
    (dict(attention_bias=True), "attention_bias"),
    (dict(mlp_bias=True), "mlp_bias"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(head_dim=8), "head_dim"),
    (dict(attention_dropout=0.1), "attention_dropout"),
    (dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e4}),
     r"rope_type'\]='dynamic'"),
    (dict(rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                           "partial_rotary_factor": 0.5}), "partial_rotary_factor"),
])
def test_llama_configs_refllm_cannot_express_are_refused(transformers, change, message):
    cfg = transformers.LlamaConfig(vocab_size=V, hidden_size=8, intermediate_size=8,
                                   num_hidden_layers=1, num_attention_heads=2, **change)
    with pytest.raises(ValueError, match=message):
        llama_config_to_refllm(cfg)


def test_a_tied_head_the_config_calls_untied_is_refused(transformers):
    hf = random_llama(transformers, tied=False)
    hf.lm_head.weight = hf.model.embed_tokens.weight  # tied by hand, the config still untied
    with pytest.raises(ValueError, match="tie_word_embeddings=False"):
        from_hf_llama(hf)


def test_the_wrong_kind_of_model_or_config_is_a_type_error(transformers):
    with pytest.raises(TypeError, match="LlamaForCausalLM"):
        from_hf_llama(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="LlamaConfig"):
        llama_config_to_refllm(transformers.GPT2Config())
    with pytest.raises(TypeError, match="refllm GPT"):
        to_hf_llama(torch.nn.Linear(2, 2))
