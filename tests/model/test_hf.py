"""refllm's GPT and transformers' GPT2LMHeadModel are the same function of the same weights.

Offline only: HF_HUB_OFFLINE=1 before transformers is imported, models built from a GPT2Config
with a seeded random init (no pretrained weights exist here), directories saved to tmp_path.
Logits are compared in float64 with refllm's "exact" tolerance (rtol = atol = 1e-12: the two
differ only by rounding; measured max abs difference about 1e-16 on logits of size ~1).
"""

from __future__ import annotations

import pytest
import torch

from refllm.model import GPT, GPTConfig, generate
from refllm.model.hf import (
    from_hf,
    gpt2_config_to_refllm,
    hf_state_to_refllm,
    load_gpt2,
    refllm_config_to_gpt2,
    save_gpt2,
    to_hf,
)
from refllm.testing import assert_close

V, N = 13, 16


@pytest.fixture(scope="module")
def transformers():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield pytest.importorskip("transformers")


def random_gpt2(transformers, *, tied=True, attn="eager", seed=0, **config):
    """A float64 GPT2LMHeadModel with every parameter (LayerNorms too) drawn from a seed."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=N, n_embd=8, n_layer=2, n_head=2,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                  bos_token_id=None, eos_token_id=None, tie_word_embeddings=tied,
                                  attn_implementation=attn, **config)
    hf = transformers.GPT2LMHeadModel(cfg).double().eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.5)
    return hf


def ids(b=2, t=N, seed=1):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def state(module):
    return {k: v for k, v in module.state_dict().items() if not k.endswith(".attn.bias")}


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("attention", ["fused", "reference"])
def test_a_gpt2_converted_to_refllm_gives_the_same_logits_in_float64(transformers, tied, attn,
                                                                      attention):
    hf = random_gpt2(transformers, tied=tied, attn=attn)
    model = from_hf(hf, attention=attention)
    assert model.config.tie_embeddings == tied
    assert (model.lm_head.weight is model.transformer.wte.weight) == tied
    x = ids()
    with torch.no_grad():
        assert_close(model(x), hf(x).logits, kind="exact")


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_both_directions_round_trip_the_weights_exactly(transformers, tied):
    hf = random_gpt2(transformers, tied=tied)
    back = to_hf(from_hf(hf))
    assert state(back).keys() == state(hf).keys()
    for name, tensor in state(hf).items():
        assert torch.equal(state(back)[name], tensor), name
    torch.manual_seed(3)
    cfg = GPTConfig(vocab_size=V, n_ctx=N, n_layer=2, n_head=2, d_model=8, d_ff=24,
                    tie_embeddings=tied, init_std=0.5)
    model = GPT(cfg).double()
    again = from_hf(to_hf(model))
    assert again.config == cfg
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_a_refllm_gpt_converted_to_gpt2_gives_the_same_logits(transformers):
    torch.manual_seed(4)
    model = GPT(GPTConfig(vocab_size=V, n_ctx=N, n_layer=2, n_head=2, d_model=8, d_ff=20,
                          init_std=0.5)).double().eval()
    hf = to_hf(model)
    assert hf.config.n_inner == 20 and hf.config._attn_implementation == "eager"
    assert not hf.training
    with torch.no_grad():
        assert_close(hf(ids()).logits, model(ids()), kind="exact")


def greedy_hf(hf, prompt, n):
    out = prompt
    with torch.no_grad():
        for _ in range(n):
            out = torch.cat([out, hf(out).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return out


def test_greedy_decoding_gives_the_same_tokens(transformers):
    hf = random_gpt2(transformers, seed=5)
    prompt = ids(b=3, t=4, seed=6)
    tokens = generate(from_hf(hf), prompt, 10, greedy=True)
    assert torch.equal(tokens, greedy_hf(hf, prompt, 10))


def test_a_left_padded_batch_with_mask_and_positions_matches(transformers):
    hf = random_gpt2(transformers, seed=7)
    model = from_hf(hf)
    x = ids(b=3, t=9, seed=8)
    mask = torch.arange(9)[None, :] >= torch.tensor([[0], [3], [8]])  # 0, 3 and 8 pads
    positions = (mask.long().cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        theirs = hf(x, attention_mask=mask.long(), position_ids=positions).logits
        ours = model(x, attention_mask=mask)
    assert_close(ours[mask], theirs[mask], kind="exact")  # padded positions are not compared


def test_a_saved_directory_loads_offline(transformers, tmp_path):
    hf = random_gpt2(transformers, tied=False, seed=9)
    hf.save_pretrained(tmp_path / "gpt2")
    model = load_gpt2(tmp_path / "gpt2").double()
    with torch.no_grad():
        assert_close(model(ids()), hf(ids()).logits, kind="exact")
    save_gpt2(model, tmp_path / "again")
    with torch.no_grad():
        assert_close(load_gpt2(tmp_path / "again")(ids()), model(ids()), kind="exact")
    with pytest.raises(ValueError, match="never overwrites"):
        save_gpt2(model, tmp_path / "again")


def test_loading_a_missing_or_foreign_directory_is_a_clear_error(transformers, tmp_path):
    with pytest.raises(ValueError, match="does not exist.*never downloads"):
        load_gpt2(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="does not exist"):
        load_gpt2("gpt2")  # a hub name is not a directory: never looked up
    with pytest.raises(ValueError, match="no config.json"):
        load_gpt2(tmp_path)


@pytest.mark.parametrize("change, message", [
    (dict(positions="rope"), "RoPE"),
    (dict(n_kv_head=1), "grouped-query"),
    (dict(bias=False), "biases"),
])
def test_configs_gpt2_cannot_express_are_refused(transformers, change, message):
    cfg = GPTConfig(vocab_size=V, n_ctx=N, n_layer=1, n_head=2, d_model=8, **change)
    with pytest.raises(ValueError, match=message):
        refllm_config_to_gpt2(cfg)


def test_gpt2_configs_refllm_cannot_express_are_refused(transformers):
    for change in (dict(activation_function="relu"), dict(scale_attn_by_inverse_layer_idx=True)):
        cfg = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, **change)
        with pytest.raises(ValueError, match=next(iter(change))):
            gpt2_config_to_refllm(cfg)
    mixed = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, attn_pdrop=0.0)
    with pytest.raises(ValueError, match="one dropout rate"):
        gpt2_config_to_refllm(mixed)
    assert gpt2_config_to_refllm(mixed, dropout=0.1).dropout == 0.1


def test_config_fields_map_both_ways(transformers):
    cfg = GPTConfig(vocab_size=50257, n_ctx=32, n_layer=3, n_head=4, d_model=16, dropout=0.25,
                    layer_norm_eps=1e-6, init_std=0.01, tie_embeddings=False)
    hf_cfg = refllm_config_to_gpt2(cfg)
    assert (hf_cfg.resid_pdrop, hf_cfg.embd_pdrop, hf_cfg.attn_pdrop) == (0.25, 0.25, 0.25)
    assert hf_cfg.layer_norm_epsilon == 1e-6 and hf_cfg.activation_function == "gelu_new"
    assert hf_cfg.n_inner is None and hf_cfg.eos_token_id == 50256
    assert gpt2_config_to_refllm(hf_cfg) == cfg


def test_the_causal_mask_buffers_of_older_versions_are_not_weights(transformers):
    hf = random_gpt2(transformers)
    old = dict(hf.state_dict())
    old["transformer.h.0.attn.bias"] = torch.tril(torch.ones(1, 1, N, N, dtype=torch.bool))
    old["transformer.h.0.attn.masked_bias"] = torch.tensor(-1e4)
    converted = hf_state_to_refllm(old)
    assert not any(k.endswith((".attn.bias", ".attn.masked_bias")) for k in converted)
    assert "transformer.h.0.attn.c_attn.bias" in converted  # a weight whose name ends alike
    GPT(gpt2_config_to_refllm(hf.config)).double().load_state_dict(converted, strict=True)
