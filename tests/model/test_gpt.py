import dataclasses
import hashlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from refllm.model import GPT, GPTConfig
from refllm.model.gpt import RMSNorm, SwiGLUMLP
from refllm.model.rope import apply_rope, apply_rope_naive
from refllm.ops import gated_mlp_naive, rms_norm_naive
from refllm.testing.engine.compare import assert_close
from tests.model.strategies import build, configs, token_ids

CFG = GPTConfig(vocab_size=11, n_ctx=8, n_layer=2, n_head=2, d_model=8)


@given(configs(), st.data())
def test_the_two_attention_backends_give_the_same_logits_in_float64(config, data):
    b, t = data.draw(st.integers(1, 3)), data.draw(st.integers(1, config.n_ctx))
    idx = token_ids(data.draw, config, b, t)
    fused = build(dataclasses.replace(config, attention="fused"))
    reference = build(dataclasses.replace(config, attention="reference"))
    assert_close(reference(idx), fused(idx))


@given(configs(), st.data())
def test_logits_before_t_do_not_depend_on_tokens_from_t_on(config, data):
    t = data.draw(st.integers(2, config.n_ctx)) if config.n_ctx > 1 else 1
    cut = data.draw(st.integers(0, t - 1))
    a, b = token_ids(data.draw, config, 1, t), token_ids(data.draw, config, 1, t)
    b[:, :cut] = a[:, :cut]
    model = build(config)
    assert_close(model(b)[:, :cut], model(a)[:, :cut])


@given(configs(), st.data())
def test_a_left_padded_batch_equals_each_sequence_run_alone(config, data):
    b = data.draw(st.integers(1, 3))
    t = data.draw(st.integers(1, config.n_ctx))
    lengths = [data.draw(st.integers(1, t)) for _ in range(b)]
    idx = token_ids(data.draw, config, b, t)  # the pad ids are drawn too: they must not matter
    mask = torch.arange(t)[None, :] >= t - torch.tensor(lengths)[:, None]
    model = build(config)
    logits = model(idx, attention_mask=mask)
    assert torch.isfinite(logits).all()
    for row, n in enumerate(lengths):
        assert_close(logits[row, t - n:], model(idx[row:row + 1, t - n:])[0])


def test_rope_fast_equals_naive_and_keeps_relative_positions():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    pos = torch.randint(0, 50, (2, 4))
    assert_close(apply_rope(x, pos, 100.0), apply_rope_naive(x, pos, 100.0))
    q, k = x[:, :1], x[:, 1:2]
    scores = apply_rope(q, pos, 100.0) @ apply_rope(k, pos, 100.0).transpose(-1, -2)
    shifted = apply_rope(q, pos + 7, 100.0) @ apply_rope(k, pos + 7, 100.0).transpose(-1, -2)
    assert_close(shifted, scores)


def test_residual_projections_are_initialised_with_the_scaled_std():
    cfg = GPTConfig(vocab_size=64, n_ctx=8, n_layer=8, n_head=4, d_model=64, bias=True)
    model = GPT(cfg)
    proj = torch.cat([b.attn.c_proj.weight.flatten() for b in model.transformer.h])
    fc = torch.cat([b.mlp.c_fc.weight.flatten() for b in model.transformer.h])
    assert abs(proj.std().item() / (0.02 / 4) - 1) < 0.05  # 1 / sqrt(2 * 8) = 1 / 4
    assert abs(fc.std().item() / 0.02 - 1) < 0.05
    assert model.lm_head.weight is model.transformer.wte.weight
    assert all(b.attn.c_attn.bias.eq(0).all() for b in model.transformer.h)


def test_a_context_longer_than_n_ctx_is_an_error_with_the_numbers():
    with pytest.raises(ValueError, match=r"9 exceeds the context length n_ctx=8"):
        GPT(CFG)(torch.zeros(1, 9, dtype=torch.int64))


@pytest.mark.parametrize("idx, error, words", [
    (torch.zeros(1, 3, dtype=torch.int32), TypeError, "idx must be an int64 tensor"),
    ([[1, 2]], TypeError, "idx must be an int64 tensor"),
    (torch.zeros(3, dtype=torch.int64), ValueError, "idx must have 2 dimensions"),
    (torch.zeros(1, 0, dtype=torch.int64), ValueError, "idx must hold at least one"),
    (torch.tensor([[1, 2], [3, 11]]), ValueError, r"token id 11 at position \(1, 1\)"),
    (torch.tensor([[1, -1]]), ValueError, r"token id -1 at position \(0, 1\)"),
])
def test_bad_token_ids_raise_an_error_naming_idx(idx, error, words):
    with pytest.raises(error, match=words):
        GPT(CFG)(idx)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(attention_mask=torch.ones(1, 3)), TypeError, "attention_mask must be a bool tensor"),
    (dict(attention_mask=torch.ones(1, 2, dtype=torch.bool)), ValueError,
     r"attention_mask must have shape \(b, cached \+ t\) = \(1, 3\)"),
    (dict(position_ids=torch.zeros(1, 3, dtype=torch.int32)), TypeError, "position_ids must be"),
    (dict(position_ids=torch.zeros(1, 2, dtype=torch.int64)), ValueError, "position_ids must"),
    (dict(position_ids=torch.tensor([[0, 1, 8]])), ValueError, r"position_ids must lie in"),
    (dict(cache={}), TypeError, "cache must be a KVCache"),
])
def test_bad_masks_positions_and_caches_raise_errors_naming_them(kwargs, error, words):
    with pytest.raises(error, match=words):
        GPT(CFG)(torch.tensor([[1, 2, 3]]), **kwargs)


def test_gpt_wants_a_gpt_config():
    with pytest.raises(TypeError, match="config must be a GPTConfig"):
        GPT(CFG.to_dict())


@given(configs(dropout=True), st.integers(0, 2**31))
def test_dropout_acts_in_training_only_and_gradients_flow(config, seed):
    model = build(config)
    idx = torch.randint(0, config.vocab_size, (2, config.n_ctx),
                        generator=torch.Generator().manual_seed(seed))
    assert torch.equal(model(idx), model(idx))  # eval: deterministic
    model.train()
    torch.manual_seed(seed)
    logits = model(idx)
    logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())
    if config.dropout == 0:
        assert_close(logits, model.eval()(idx))


# Recorded from GPT(config) before the norm and MLP options existed (seed 0, float32 init cast to
# float64; ids arange(16) % 11 as (2, 8)): the sha256 of the state dict (names and bytes) and the
# logits of the last position of the second row, as float.hex. The GPT-2 block's default fields
# must keep every existing config, checkpoint and result as it was.
GOLDEN = [
    (dict(), "0b1e20be24f38d0363e252ec6d878f87f4a75159193030d3f05cefdc2225e272",
     ['0x1.f3fd44a282a69p-5', '-0x1.0c19dc77770fep-5', '-0x1.c3c5be2845c51p-4',
      '0x1.25c1fe4dbcb3fp-4', '0x1.241dc88f57ca4p-4', '0x1.210ab3ed58f29p-4',
      '-0x1.2ae3669c7a732p-4', '0x1.7771cc8ceeffcp-7', '0x1.83c8f2170687ap-5',
      '-0x1.1d8e062741bc4p-7', '-0x1.26a853bf733d8p-4']),
    (dict(n_head=4, d_model=16, n_kv_head=2, bias=False, tie_embeddings=False,
          positions="rope", d_ff=24),
     "48dc17ed151ce4de80f7be62c0e7aef180f35d3cae152c25787167d3d1c62a08",
     ['-0x1.8fa85bf07fe50p-3', '-0x1.5f9e954e3a15cp-8', '-0x1.36f135d83976cp-3',
      '0x1.d9c0723533548p-5', '-0x1.50e8ac2ab670ap-5', '0x1.bb58614700646p-6',
      '0x1.98459b6c50014p-6', '0x1.3849d80fe5686p-4', '-0x1.7c077bf0a5ea8p-5',
      '-0x1.33f2ed179aeafp-7', '0x1.a0019495bfcf0p-4']),
]


@pytest.mark.parametrize("change, digest, last", GOLDEN, ids=["gpt2", "rope-gqa-untied"])
def test_the_default_block_gives_the_recorded_weights_and_logits(change, digest, last):
    cfg = GPTConfig(**{**dict(vocab_size=11, n_ctx=8, n_layer=2, n_head=2, d_model=8), **change})
    assert (cfg.norm, cfg.mlp) == ("layernorm", "gelu")
    torch.manual_seed(0)
    model = GPT(cfg).double().eval()
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.numpy().tobytes())
    assert h.hexdigest() == digest  # the initialisation draws the same numbers, bit for bit
    with torch.no_grad():
        logits = model(torch.arange(16).reshape(2, 8) % 11)
    # the same float64 products in the same order: equal here; "exact" (1e-12) allows another
    # BLAS's summation order
    assert_close(logits[1, -1], torch.tensor([float.fromhex(x) for x in last],
                                             dtype=torch.float64))


def test_the_llama_block_is_rmsnorm_swiglu_rope_without_biases_and_untied():
    cfg = GPTConfig.llama(vocab_size=11, n_ctx=8, n_layer=2, n_head=4, d_model=16, n_kv_head=2)
    model = GPT(cfg)
    block = model.transformer.h[0]
    assert isinstance(block.ln_1, RMSNorm) and isinstance(model.transformer.ln_f, RMSNorm)
    assert isinstance(block.mlp, SwiGLUMLP)
    assert block.mlp.c_fc.weight.shape == (2 * 42, 16)  # gate and up, f = floor(8 * 16 / 3)
    assert "transformer.wpe.weight" not in model.state_dict()
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert all(b.ln_1.weight.eq(1).all() and b.ln_2.weight.eq(1).all() for b in model.transformer.h)


def test_the_swiglu_mlp_is_the_gated_mlp_op_with_the_gate_first():
    torch.manual_seed(0)
    cfg = GPTConfig.llama(vocab_size=5, n_ctx=4, n_layer=1, n_head=1, d_model=6, d_ff=5)
    mlp = SwiGLUMLP(cfg).double()
    x = torch.randn(2, 3, 6, dtype=torch.float64)
    gate, up = mlp.c_fc.weight[:5], mlp.c_fc.weight[5:]
    assert_close(mlp(x), gated_mlp_naive(x, gate, up, mlp.c_proj.weight))


def test_the_rms_norm_module_is_the_naive_formula_with_the_configured_eps():
    torch.manual_seed(0)
    norm = RMSNorm(6, eps=0.25).double()
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 6, dtype=torch.float64)
    assert_close(norm(x), rms_norm_naive(x, 6, norm.weight, eps=0.25))
