import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from refllm.model import GPT, GPTConfig, flops_per_token, parameter_count
from refllm.model.counting import block_parameter_count
from tests.model.strategies import configs

GPT2_SMALL = GPTConfig(vocab_size=50257, n_ctx=1024, n_layer=12, n_head=12, d_model=768)

# each example runs several forwards: half the profile's examples keep the file fast
FEWER = settings(max_examples=max(1, settings.default.max_examples // 2))


@pytest.mark.parametrize("config, total", [
    # Llama 2 7B (Touvron et al. 2023b, Table 1; d_ff 11008): the published 6,738,415,616
    (GPTConfig.llama(vocab_size=32000, n_ctx=4096, n_layer=32, n_head=32, d_model=4096,
                     d_ff=11008), 6_738_415_616),
    # Llama 3 8B (8 key/value heads, d_ff 14336, vocabulary 128256): the published 8,030,261,248
    (GPTConfig.llama(vocab_size=128256, n_ctx=8192, n_layer=32, n_head=32, n_kv_head=8,
                     d_model=4096, d_ff=14336), 8_030_261_248),
], ids=["llama2-7b", "llama3-8b"])
def test_llama_configs_count_their_published_parameters(config, total):
    assert parameter_count(config) == total
    c, f = config.d_model, config.d_ff_
    qkv = (config.n_head + 2 * config.n_kv_head_) * config.d_head
    assert block_parameter_count(config) == 2 * c + c * qkv + c * c + 3 * c * f
    assert parameter_count(config, non_embedding=True) == total - 2 * config.vocab_size * c


def test_gpt2_small_counts_124_439_808_parameters():
    assert parameter_count(GPT2_SMALL) == 124_439_808
    assert block_parameter_count(GPT2_SMALL) == 7_087_872
    assert parameter_count(GPT2_SMALL, non_embedding=True) == 124_439_808 - 50257 * 768 - 1024 * 768


@pytest.mark.parametrize("block", [None, "llama"])
@given(data=st.data())
def test_the_closed_form_equals_the_parameters_of_the_built_model(block, data):
    config = data.draw(configs(block=block))
    model = GPT(config)
    assert parameter_count(config) == sum(p.numel() for p in model.parameters())
    vocabulary = {"transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"}
    trunk = sum(p.numel() for n, p in model.named_parameters() if n not in vocabulary)
    assert parameter_count(config, non_embedding=True) == trunk


@given(configs())
def test_kaplan_flops_are_2n_plus_2_layers_ctx_width(config):
    n = parameter_count(config, non_embedding=True)
    assert flops_per_token(config) == 2 * n + 2 * config.n_layer * config.n_ctx * config.d_model


def measured_flops_per_token(model: GPT, b: int = 2) -> float:
    """FlopCounterMode's count of one (b, n_ctx) forward under the MATH SDPA backend, per token."""
    idx = torch.zeros(b, model.config.n_ctx, dtype=torch.int64)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(idx)
    return counter.get_total_flops() / idx.numel()


@FEWER
@pytest.mark.parametrize("block", [None, "llama"])
@given(data=st.data())
def test_exact_flops_equal_flop_counter_mode_under_the_math_backend(block, data):
    # fused only: refllm's einsum attention becomes an elementwise product (uncounted) when d or
    # s is 1, so the counter would miss it; the MATH backend always runs counted matmuls.
    config = data.draw(configs(attention="fused", block=block))
    assert measured_flops_per_token(GPT(config).eval()) == flops_per_token(config, method="exact")


def test_the_llama_block_adds_half_a_matrix_product_per_mlp_and_drops_the_norm_biases():
    gpt2 = GPTConfig(vocab_size=97, n_ctx=16, n_layer=3, n_head=4, d_model=24, d_ff=64,
                     positions="rope", bias=False, tie_embeddings=False)
    llama = GPTConfig.llama(vocab_size=97, n_ctx=16, n_layer=3, n_head=4, d_model=24)
    assert llama.d_ff_ == 64  # floor(8 * 24 / 3)
    L, c, f = 3, 24, 64
    assert flops_per_token(llama, "exact") - flops_per_token(gpt2, "exact") == L * 2 * c * f
    assert parameter_count(llama) - parameter_count(gpt2) == L * c * f
    assert measured_flops_per_token(GPT(llama).eval()) == flops_per_token(llama, "exact")


def test_exact_less_kaplan_is_half_the_dense_attention_and_the_lm_head_less_small_terms():
    cfg = GPTConfig(vocab_size=97, n_ctx=16, n_layer=3, n_head=4, d_model=32, n_kv_head=2)
    assert measured_flops_per_token(GPT(cfg).eval()) == flops_per_token(cfg, "exact")
    # Kaplan books half the dense attention matrix and no LM head:
    exact, kaplan = flops_per_token(cfg, "exact"), flops_per_token(cfg, "kaplan")
    c, n, L = cfg.d_model, cfg.n_ctx, cfg.n_layer
    biases_and_norms = 2 * (parameter_count(cfg, non_embedding=True) - L * (
        c * (4 + 2 * 2) * 8 + c * c + 2 * c * 4 * c))
    assert exact - kaplan == 2 * L * n * c + 2 * c * cfg.vocab_size - biases_and_norms


@pytest.mark.parametrize("bad, error, words", [
    (dict(config={"n_layer": 1}), TypeError, "config must be a GPTConfig"),
    (dict(config=GPT2_SMALL, method="chinchilla"), ValueError, "method must be"),
])
def test_bad_counting_arguments_raise_errors_naming_them(bad, error, words):
    with pytest.raises(error, match=words):
        flops_per_token(**bad)


def test_non_embedding_must_be_a_bool():
    with pytest.raises(TypeError, match="non_embedding must be a bool"):
        parameter_count(GPT2_SMALL, non_embedding=1)
