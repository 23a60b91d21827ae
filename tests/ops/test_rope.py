"""rope: fast == naive, == transformers (frequencies, apply_rotary_pos_emb), properties, errors."""

import math
import os

import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st

from refllm.ops.rope import rope, rope_naive, rope_tables
from refllm.ops.rope_scaling import (
    LinearScaling,
    Llama3Scaling,
    NTKScaling,
    YarnScaling,
    dynamic_ntk_factor,
    rope_frequencies,
    rope_frequencies_naive,
    scaling_from_hf,
)
from refllm.testing import assert_close

f64 = torch.float64
EPS32 = torch.finfo(torch.float32).eps


def scalings(r):
    """None or one rule, its parameters over the ranges checkpoints use (and past them)."""
    factor = st.floats(1.0, 32.0)
    length = st.sampled_from([16, 64, 512, 4096, 8192])
    options = [st.none(), st.builds(LinearScaling, factor),
               st.builds(YarnScaling, factor, length, beta_fast=st.floats(8.0, 64.0),
                         beta_slow=st.floats(0.25, 4.0), truncate=st.booleans(),
                         mscale=st.sampled_from([None, 0.707, 1.0]),
                         mscale_all_dim=st.sampled_from([None, 0.707, 1.0])),
               st.builds(lambda f, lo, gap, n: Llama3Scaling(f, lo, lo + gap, n), factor,
                         st.floats(0.25, 2.0), st.floats(0.5, 8.0), length)]
    if r >= 4:
        options.append(st.builds(NTKScaling, factor))
    return st.one_of(*options)


@st.composite
def rope_inputs(draw, dtype=f64):
    """(x, kwargs): x (*lead, t, d) with 0-2 leading axes; a rotary width r <= d (all of d, or
    the first r of a wider head); positions as offset + arange, (t,), (b, t) or (1, t), with
    values up to 2^15 in some examples; a base and a scaling rule."""
    lead = draw(st.lists(st.integers(0, 3), max_size=2), label="leading shape")
    t = draw(st.integers(0, 5), label="t")
    r = 2 * draw(st.integers(1, 6), label="r / 2")
    extra = draw(st.sampled_from([0, 0, 1, 2]), label="features past r")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))
    x = torch.randn(*lead, t, r + extra, generator=gen, dtype=f64).to(dtype)
    kwargs = dict(layout=draw(st.sampled_from(["neox", "gptj"]), label="layout"),
                  base=draw(st.sampled_from([10.0, 10000.0, 500000.0]), label="base"),
                  scaling=draw(scalings(r), label="scaling"))
    if extra or draw(st.booleans(), label="rotary_dim given"):
        kwargs["rotary_dim"] = r
    high = draw(st.sampled_from([8, 4096, 2**15]), label="largest position")
    modes = ["offset", "t"] + (["bt", "1t"] if lead else [])
    mode = draw(st.sampled_from(modes), label="positions")
    if mode == "offset":
        kwargs["offset"] = draw(st.integers(0, high), label="offset")
    else:
        rows = {"t": (), "bt": tuple(lead[:1]), "1t": (1,)}[mode]
        kwargs["positions"] = torch.randint(0, high, (*rows, t), generator=gen)
    return x, kwargs


@given(rope_inputs())
@example((torch.ones(0, 0, 2, dtype=f64), {"positions": torch.zeros(0, 0, dtype=torch.int64)}))
@example((torch.ones(2, 1, 3, 4, dtype=f64), {"positions": torch.tensor([[5, 6, 7]])}))
def test_fast_rope_equals_naive(inputs):
    x, kwargs = inputs
    assert_close(rope(x, **kwargs), rope_naive(x, **kwargs))


@given(st.integers(1, 64).map(lambda h: 2 * h).flatmap(
    lambda r: st.tuples(st.just(r), st.sampled_from([10.0, 1e4, 5e5, 1e6]), scalings(r))))
def test_fast_frequencies_equal_naive(args):
    theta, a = rope_frequencies(*args)
    theta_naive, a_naive = rope_frequencies_naive(*args)
    assert_close(theta, torch.tensor(theta_naive, dtype=f64))
    assert a == a_naive


# --- against transformers ---------------------------------------------------------------------

def _hf(module_path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return pytest.importorskip(module_path)


def _hf_config(rope_parameters, head_dim, max_position_embeddings=8192):
    llama = _hf("transformers.models.llama.modeling_llama")
    return llama.LlamaConfig(hidden_size=2 * head_dim, num_attention_heads=2, head_dim=head_dim,
                             max_position_embeddings=max_position_embeddings,
                             rope_parameters=rope_parameters)


HF_CASES = {  # rope_parameters as checkpoints state them; head_dim
    "default": ({"rope_type": "default", "rope_theta": 10000.0}, 64),
    "linear": ({"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}, 64),
    "linear-partial": ({"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0,
                        "partial_rotary_factor": 0.25}, 64),
    "llama3.1": ({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                  "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 8192}, 128),
    "llama3-short": ({"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 512}, 64),
    "yarn": ({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
              "original_max_position_embeddings": 2048}, 128),
    "yarn-untruncated": ({"rope_type": "yarn", "rope_theta": 1e6, "factor": 16.0,
                          "original_max_position_embeddings": 512, "beta_fast": 16.0,
                          "beta_slow": 2.0, "truncate": False}, 64),
    "yarn-deepseek": ({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                       "original_max_position_embeddings": 4096, "mscale": 1.0,
                       "mscale_all_dim": 0.707}, 64),
    "yarn-partial": ({"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                      "original_max_position_embeddings": 1024,
                      "partial_rotary_factor": 0.5}, 96),
}


def _frequency_bound(base):
    """HF's frequencies are float32: the exponent 2i/r rounds (relative eps/2), which moves
    base^(2i/r) by ln(base) (2i/r) eps/2 relative, plus a few roundings in pow, the divisions and
    the blend; (ln(base) + 8) eps32 relative covers both."""
    return (math.log(base) + 8) * EPS32


def _hf_frequencies(rope_parameters, head_dim, max_position_embeddings=8192, seq_len=None):
    utils = _hf("transformers.modeling_rope_utils")
    config = _hf_config(rope_parameters, head_dim, max_position_embeddings)
    if rope_parameters["rope_type"] == "default":
        llama = _hf("transformers.models.llama.modeling_llama")
        return llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    return utils.ROPE_INIT_FUNCTIONS[rope_parameters["rope_type"]](config, seq_len=seq_len)


@pytest.mark.parametrize("case", HF_CASES)
def test_frequencies_equal_transformers_rope_init_functions(case):
    params, head_dim = HF_CASES[case]
    max_positions = 8192 if params["rope_type"] != "yarn" else int(
        params["factor"] * params["original_max_position_embeddings"])
    theirs, their_a = _hf_frequencies(params, head_dim, max_positions)
    base, scaling, partial = scaling_from_hf(params)
    ours, a = rope_frequencies(int(head_dim * partial), base, scaling)
    assert ours.shape == theirs.shape
    rel = ((theirs.double() - ours).abs() / ours).max().item()
    assert rel <= _frequency_bound(base), f"relative error {rel:.3g}"
    assert a == pytest.approx(their_a, rel=1e-15)


@pytest.mark.parametrize("seq_len", [100, 150, 1000])
def test_ntk_aware_is_transformers_dynamic_rule_at_a_length(seq_len):
    params = {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}
    theirs, _ = _hf_frequencies(params, 32, max_position_embeddings=100, seq_len=seq_len)
    base, scaling, _ = scaling_from_hf(params, max_position_embeddings=100, seq_len=seq_len)
    assert scaling == NTKScaling(dynamic_ntk_factor(2.0, seq_len, 100))
    ours, _ = rope_frequencies(32, base, scaling)
    rel = ((theirs.double() - ours).abs() / ours).max().item()
    assert rel <= _frequency_bound(base * scaling.factor ** (32 / 30))


def _rotate_half_reference(x, positions, rotary_dim, **kwargs):
    """Hugging Face's apply_rotary_pos_emb on the first rotary_dim features (GPT-NeoX's and Phi's
    partial rotary), fed with our float64 tables in its (.., t, r) layout."""
    llama = _hf("transformers.models.llama.modeling_llama")
    cos, sin = rope_tables(positions, rotary_dim, **kwargs)  # (b, t, r/2)
    cos, sin = torch.cat((cos, cos), -1), torch.cat((sin, sin), -1)
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    q, _ = llama.apply_rotary_pos_emb(rot, rot, cos, sin)
    return torch.cat((q, rest), -1)


@pytest.mark.parametrize("rotary_dim", [16, 8])
@pytest.mark.parametrize("scaling", [None, YarnScaling(4.0, 64)], ids=["plain", "yarn"])
def test_neox_layout_is_hugging_faces_apply_rotary_pos_emb(rotary_dim, scaling):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 16, generator=gen, dtype=f64)
    positions = torch.randint(0, 5000, (2, 7), generator=gen)
    ours = rope(x, positions, rotary_dim=rotary_dim, scaling=scaling)
    assert_close(ours, _rotate_half_reference(x, positions, rotary_dim, scaling=scaling))


@pytest.mark.parametrize("case", ["default", "llama3.1", "yarn", "linear-partial"])
def test_rope_is_llamas_rotary_embedding_to_float32_accuracy(case):
    llama = _hf("transformers.models.llama.modeling_llama")
    params, head_dim = HF_CASES[case]
    base, scaling, partial = scaling_from_hf(params)
    r = int(head_dim * partial)
    config = _hf_config(dict(params, partial_rotary_factor=1.0), r, max_position_embeddings=16384)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 6, r, generator=gen, dtype=f64)
    positions = torch.tensor([[0, 1, 255, 256, 4095, 8191]])
    cos, sin = llama.LlamaRotaryEmbedding(config)(x.float(), positions)  # float32 tables
    theirs, _ = llama.apply_rotary_pos_emb(x, x, cos.double(), sin.double())
    ours = rope(x, positions, base=base, scaling=scaling)
    # HF's angle m theta'_i is float32: theta'_i is off by (ln(base) i / r + 4) eps32 relative (its
    # exponent 2i/r rounded, then pow, the rule's divisions and blend), the product by eps/2;
    # cos, sin and the factor a round once more each (2 eps32). An angle error e moves both
    # features of pair i by at most a e (|x_a| + |x_b|).
    theta, a = rope_frequencies(r, base, scaling)
    rel = (math.log(base) * torch.arange(r // 2) / r + 4) * EPS32
    angle_error = positions[..., None] * theta * rel + 2 * EPS32  # (b, t, r/2)
    pair = x[..., : r // 2].abs() + x[..., r // 2:].abs()  # (b, h, t, r/2)
    bound = a * angle_error[:, None] * pair
    assert ((ours - theirs).abs() <= torch.cat((bound, bound), -1)).all()


# --- properties -------------------------------------------------------------------------------

def _no_factor(kwargs):
    """The same call with YaRN's factor a set to 1, so that the rotation is orthogonal."""
    s = kwargs.get("scaling")
    if isinstance(s, YarnScaling):
        kwargs = dict(kwargs, scaling=YarnScaling(s.factor, s.original_max_position_embeddings,
                                                  s.beta_fast, s.beta_slow, truncate=s.truncate,
                                                  attention_factor=1.0))
    return kwargs


@given(rope_inputs())
def test_rope_preserves_the_norm_of_each_vector(inputs):
    x, kwargs = inputs
    kwargs = _no_factor(kwargs)
    assert_close(rope(x, **kwargs).norm(dim=-1), x.norm(dim=-1), kind="impl")


@given(rope_inputs(), st.integers(-2**15, 2**15))
@example((torch.ones(1, 3, 4, dtype=f64), {"offset": 0}), 7)
def test_scores_depend_only_on_the_relative_position(inputs, shift):
    x, kwargs = inputs
    kwargs = {k: v for k, v in kwargs.items() if k not in ("positions", "offset")}
    gen = torch.Generator().manual_seed(shift % 1000)
    k = torch.randn(x.shape, generator=gen, dtype=f64)
    t = x.shape[-2]
    m = torch.randint(0, 2**15, (t,), generator=gen)
    scores = rope(x, m, **kwargs) @ rope(k, m, **kwargs).transpose(-1, -2)
    moved = rope(x, m + shift, **kwargs) @ rope(k, m + shift, **kwargs).transpose(-1, -2)
    assert_close(moved, scores, kind="impl")


@given(rope_inputs(), st.integers(0, 2**15), st.integers(0, 2**15))
def test_rotations_compose_and_position_zero_is_the_identity(inputs, m, n):
    x, kwargs = inputs
    kwargs = {k: v for k, v in _no_factor(kwargs).items() if k not in ("positions", "offset")}
    t = x.shape[-2]
    zero = torch.zeros(t, dtype=torch.int64)
    assert_close(rope(x, zero, **kwargs), x)
    twice = rope(rope(x, offset=m, **kwargs), torch.full((t,), n), **kwargs)
    assert_close(twice, rope(x, torch.arange(t) + m + n, **kwargs), kind="impl")


@given(rope_inputs())
def test_an_offset_is_the_positions_offset_plus_arange(inputs):
    x, kwargs = inputs
    offset = kwargs.pop("offset", 0)
    kwargs.pop("positions", None)
    explicit = torch.arange(x.shape[-2]) + offset
    assert torch.equal(rope(x, offset=offset, **kwargs), rope(x, explicit, **kwargs))


@given(rope_inputs())
def test_interleaved_is_the_half_split_on_permuted_features(inputs):
    x, kwargs = inputs
    r = kwargs.get("rotary_dim", x.shape[-1])
    perm = torch.cat((torch.arange(0, r, 2), torch.arange(1, r, 2), torch.arange(r, x.shape[-1])))
    gptj = rope(x, **dict(kwargs, layout="gptj"))
    neox = rope(x[..., perm], **dict(kwargs, layout="neox"))
    assert_close(gptj[..., perm], neox)


@given(rope_inputs())
def test_the_gradient_is_the_rotation_back(inputs):
    x, kwargs = inputs
    kwargs = _no_factor(kwargs)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=f64)
    leaf = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad((rope(leaf, **kwargs) * g).sum(), leaf)
    back = dict(kwargs)  # R_m^T = R_{-m}
    if "offset" in back:
        t = x.shape[-2]
        back["positions"] = -(torch.arange(t) + back.pop("offset"))
    else:
        back["positions"] = -back["positions"]
    assert_close(grad, rope(g, **back), kind="impl")


def test_rope_passes_gradcheck_in_float64():
    x = torch.randn(2, 3, 4, 10, dtype=f64, requires_grad=True)
    for kwargs in ({}, {"layout": "gptj", "rotary_dim": 6, "scaling": YarnScaling(4.0, 32)}):
        def fn(x, kwargs=kwargs):
            return rope(x, offset=5, **kwargs)
        assert torch.autograd.gradcheck(fn, (x,))


@given(rope_inputs(), st.integers(2, 8))
def test_linear_scaling_reads_position_s_m_as_m(inputs, s):
    x, kwargs = inputs
    kwargs = {k: v for k, v in kwargs.items() if k not in ("positions", "offset", "scaling")}
    m = torch.arange(x.shape[-2]) * 13
    assert_close(rope(x, s * m, scaling=LinearScaling(float(s)), **kwargs), rope(x, m, **kwargs),
                 kind="impl")


@given(st.integers(2, 64), st.floats(1.0, 64.0), st.sampled_from([1e4, 5e5]))
def test_ntk_aware_keeps_the_highest_frequency_and_divides_the_lowest(half, s, base):
    theta, _ = rope_frequencies(2 * half, base)
    scaled, _ = rope_frequencies(2 * half, base, NTKScaling(s))
    assert scaled[0].item() == 1.0
    assert_close(scaled[-1], theta[-1] / s, kind="impl")


@given(st.floats(1.0, 32.0), st.floats(0.25, 2.0), st.floats(0.5, 8.0),
       st.sampled_from([64, 8192]), st.sampled_from([1e4, 5e5]))
def test_llama3_keeps_high_divides_low_and_is_continuous(s, lo, gap, length, base):
    rule = Llama3Scaling(s, lo, lo + gap, length)
    theta, _ = rope_frequencies(128, base)
    scaled, _ = rope_frequencies(128, base, rule)
    wavelength = 2 * math.pi / theta
    high, low = wavelength < length / (lo + gap), wavelength > length / lo
    assert torch.equal(scaled[high], theta[high])
    assert_close(scaled[low], theta[low] / s)
    middle = ~high & ~low  # between theta / s and theta
    assert (scaled[middle] >= theta[middle] / s * (1 - 1e-15)).all()
    assert (scaled[middle] <= theta[middle] * (1 + 1e-15)).all()
    for w in (length / lo, length / (lo + gap)):  # both pieces agree at each boundary
        inv = torch.tensor([2 * math.pi / w], dtype=f64)
        k = (length / w - lo) / gap
        smooth = (1 - k) * inv / s + k * inv
        assert_close(smooth, inv / s if w == length / lo else inv)


def test_yarn_at_factor_one_is_plain_rope_and_its_factor_is_papers():
    plain, _ = rope_frequencies(64, 1e4)
    same, a = rope_frequencies(64, 1e4, YarnScaling(1.0, 2048))
    assert_close(same, plain) and a == 1.0
    _, a = rope_frequencies(64, 1e4, YarnScaling(16.0, 2048))
    assert a == pytest.approx(0.1 * math.log(16.0) + 1)  # Peng et al. 2023, §3.4
    x = torch.randn(3, 64, dtype=f64)
    assert_close(rope(x, offset=9, scaling=YarnScaling(16.0, 2048)).norm(dim=-1),
                 a * x.norm(dim=-1), kind="impl")


# --- precision --------------------------------------------------------------------------------

def test_positions_past_256_stay_apart_where_bfloat16_tables_merge_them():
    x = torch.randn(8, 16, dtype=torch.bfloat16)
    positions = torch.arange(256, 264)
    theta, _ = rope_frequencies(16)
    merged = positions.to(torch.bfloat16)  # the bug: 257 -> 256, 259 -> 260, ...
    assert merged.unique().numel() < positions.numel()
    ours = rope(x[:1].expand(8, 16), positions)  # one vector at eight positions
    assert ours.unique(dim=0).shape[0] == 8
    exact = rope_naive(x[:1].expand(8, 16).double(), positions)
    # one rounding of a float32 computation (half an ulp of bfloat16 plus float32's error)
    info = torch.finfo(torch.bfloat16)
    assert ((ours.double() - exact).abs() <= info.eps * exact.abs() + 4 * EPS32 * 2 *
            x.double().abs().max()).all()
    del theta


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@given(rope_inputs())
def test_in_low_precision_rope_rounds_once(dtype, inputs):
    x, kwargs = inputs
    x = x.to(dtype)
    ours = rope(x, **kwargs)
    exact = rope_naive(x.double(), **kwargs)
    _, a = rope_frequencies(kwargs.get("rotary_dim", x.shape[-1]), kwargs["base"],
                            kwargs["scaling"])
    # the float32 products and sum (3 roundings of terms up to a |x|), then half an ulp of dtype
    info = torch.finfo(dtype)
    err = 4 * EPS32 * 2 * a * x.double().abs().amax(-1, keepdim=True)
    assert ((ours.double() - exact).abs() <= info.eps / 2 * exact.abs() + 2 * err
            + info.smallest_normal * info.eps).all()


def test_at_positions_in_the_thousands_float32_angles_would_not_pass():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 8, 64, generator=gen)
    positions = torch.arange(30000, 30008)
    exact = rope_naive(x.double(), positions)
    ours = (rope(x, positions).double() - exact).abs().max().item()
    # float32 cos, sin and two products and a sum, each a rounding of eps/2 of a term of at most
    # |x_a| + |x_b| <= 2 max|x|: about 2 eps32 (2 max|x|); 8 eps32 max|x| with room for one more
    assert ours <= 8 * EPS32 * x.abs().max().item()
    theta32 = rope_frequencies(64)[0].float()
    angle32 = positions.float()[:, None] * theta32  # float32 angles: m eps32 / 2 ~ 2e-3 rad
    x1, x2 = x[..., :32], x[..., 32:]
    c, s = angle32.cos(), angle32.sin()
    f32 = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), -1)
    assert (f32.double() - exact).abs().max().item() > 100 * ours  # a test that can tell


# --- bad input --------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [rope, rope_naive])
@pytest.mark.parametrize("args, kwargs, error, words", [
    ((torch.ones(2, 5),), {}, ValueError, "(the head width d=5) must be even"),
    ((torch.ones(2, 8),), {"rotary_dim": 5}, ValueError, "rotary_dim must be even"),
    ((torch.ones(2, 8),), {"rotary_dim": 10}, ValueError, "rotary_dim must be at most"),
    ((torch.ones(2, 8),), {"rotary_dim": 0}, ValueError, "rotary_dim must be >= 2"),
    ((torch.ones(2, 8), torch.ones(2)), {}, TypeError, "positions must be an integer tensor"),
    ((torch.ones(2, 8), torch.tensor([True, False])), {}, TypeError, "positions must be an int"),
    ((torch.ones(2, 8), torch.arange(3)), {}, ValueError, "positions must have shape (2,)"),
    ((torch.ones(3, 2, 8), torch.zeros(2, 2, dtype=torch.int64)), {}, ValueError,
     "positions must have shape (2,) or (3, 2)"),
    ((torch.ones(2, 8), [0, 1]), {}, TypeError, "positions must be a torch.Tensor"),
    ((torch.ones(2, 8), torch.arange(2)), {"offset": 3}, ValueError, "offset must be 0"),
    ((torch.ones(2, 8),), {"offset": 1.5}, TypeError, "offset must be an int"),
    ((torch.ones(8),), {}, ValueError, "x must have at least 2 dimensions"),
    ((torch.ones(2, 8, dtype=torch.int64),), {}, TypeError, "x must be a floating-point"),
    ((torch.ones(2, 8),), {"layout": "halves"}, ValueError, "layout must be one of"),
    ((torch.ones(2, 8),), {"base": 1.0}, ValueError, "base must lie in"),
    ((torch.ones(2, 8),), {"scaling": {"factor": 2.0}}, TypeError, "scaling must be None or"),
    ((torch.ones(2, 2),), {"scaling": NTKScaling(2.0)}, ValueError, "rotary_dim >= 4"),
])
def test_bad_arguments_are_named(fn, args, kwargs, error, words):
    with pytest.raises(error) as info:
        fn(*args, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("make, error, words", [
    (lambda: LinearScaling(0.0), ValueError, "factor must lie in"),
    (lambda: NTKScaling("2"), TypeError, "factor must be a real number"),
    (lambda: Llama3Scaling(8.0, 4.0, 1.0), ValueError, "high_freq_factor must lie in"),
    (lambda: YarnScaling(4.0, 0), ValueError, "original_max_position_embeddings must be >= 1"),
    (lambda: YarnScaling(4.0, 64, beta_fast=1.0, beta_slow=2.0), ValueError, "beta_fast"),
    (lambda: scaling_from_hf({"rope_type": "longrope"}), ValueError, "rope_type"),
    (lambda: scaling_from_hf({"rope_type": "dynamic", "factor": 2.0}), ValueError, "seq_len"),
    (lambda: rope_tables(torch.ones(3), 4), TypeError, "positions must be an integer tensor"),
    (lambda: rope_tables(torch.arange(3), 3), ValueError, "rotary_dim must be even"),
])
def test_bad_scaling_and_table_arguments_are_named(make, error, words):
    with pytest.raises(error) as info:
        make()
    assert words in str(info.value)
