"""gelu, swiglu, geglu, gated_mlp: fast == naive, == PyTorch and HF, properties, errors."""

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from refllm.ops.activations import (
    gated_mlp,
    gated_mlp_naive,
    geglu,
    geglu_naive,
    gelu,
    gelu_naive,
    swiglu,
    swiglu_naive,
)
from refllm.testing import assert_close

f64 = torch.float64


@st.composite
def tensors(draw, n=1, dtype=f64):
    """n tensors of one drawn shape (0-3 axes of sizes 0-6), values at a scale over six decades
    (large gates reach silu's and gelu's linear and zero regimes)."""
    shape = draw(st.lists(st.integers(0, 6), max_size=3), label="shape")
    seed = draw(st.integers(0, 2**16), label="seed")
    scale = 10.0 ** draw(st.floats(-3, 3), label="log10 scale")
    gen = torch.Generator().manual_seed(seed)
    return tuple((torch.randn(tuple(shape), generator=gen, dtype=f64) * scale).to(dtype)
                 for _ in range(n))


approximations = st.sampled_from(["none", "tanh"])


@given(tensors(), approximations)
def test_fast_gelu_equals_naive_and_pytorch(xs, approximate):
    (x,) = xs
    assert_close(gelu(x, approximate), gelu_naive(x, approximate))
    assert_close(gelu(x, approximate), F.gelu(x, approximate=approximate), kind="impl")


@given(tensors(2), approximations)
def test_fast_gated_units_equal_naive_and_pytorch(xs, approximate):
    gate, up = xs
    assert_close(swiglu(gate, up), swiglu_naive(gate, up))
    assert_close(swiglu(gate, up), F.silu(gate) * up, kind="impl")
    assert_close(geglu(gate, up, approximate), geglu_naive(gate, up, approximate))
    assert_close(geglu(gate, up, approximate), F.gelu(gate, approximate=approximate) * up,
                 kind="impl")


PAIRS = {  # ours, and the same function from PyTorch's own ops
    "swiglu": (swiglu, lambda g, u: F.silu(g) * u),
    "geglu": (geglu, lambda g, u: F.gelu(g) * u),
    "geglu-tanh": (lambda g, u: geglu(g, u, "tanh"),
                   lambda g, u: F.gelu(g, approximate="tanh") * u),
}


@pytest.mark.parametrize("name", PAIRS)
@given(xs=tensors(2), seed=st.integers(0, 2**16))
def test_gated_unit_gradients_equal_pytorch(name, xs, seed):
    def grads(fn):
        gate, up = (t.clone().requires_grad_() for t in xs)
        y = fn(gate, up)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=f64)
        return torch.autograd.grad(y, (gate, up), g)  # a drawn, non-uniform upstream gradient
    ours, theirs = PAIRS[name]
    for a, e in zip(grads(ours), grads(theirs)):
        assert_close(a, e, kind="impl")


@given(tensors(), approximations)
def test_act_of_minus_a_is_act_of_a_minus_a(xs, approximate):
    (x,) = xs
    assert_close(gelu(-x, approximate), gelu(x, approximate) - x, kind="impl")
    one = torch.ones_like(x)
    assert_close(swiglu(-x, one), swiglu(x, one) - x, kind="impl")


def test_the_limits_are_the_identity_and_zero():
    big = torch.tensor([40.0, -40.0], dtype=f64)
    for approximate in ("none", "tanh"):
        assert gelu(big, approximate).tolist() == [40.0, -0.0]
    assert_close(swiglu(big, torch.ones(2, dtype=f64)), torch.tensor([40.0, -40 * 4.248354e-18],
                                                                     dtype=f64), kind="impl")
    assert gelu_naive(torch.tensor([-1e4], dtype=f64)).item() == 0.0  # no overflow in math.erf
    assert swiglu_naive(torch.tensor([-1e4], dtype=f64), torch.ones(1, dtype=f64)).item() == 0.0


@st.composite
def mlp_inputs(draw, dtype=f64):
    lead = draw(st.lists(st.integers(0, 3), max_size=2), label="leading shape")
    c, f = draw(st.integers(1, 6), label="c"), draw(st.integers(1, 8), label="f")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16), label="seed"))
    x = torch.randn(*lead, c, generator=gen, dtype=f64)
    ws = (torch.randn(f, c, generator=gen, dtype=f64), torch.randn(f, c, generator=gen, dtype=f64),
          torch.randn(c, f, generator=gen, dtype=f64))
    return tuple(t.to(dtype) for t in (x, *ws))


@given(mlp_inputs(), st.sampled_from(["silu", "gelu", "gelu_tanh"]))
def test_fast_gated_mlp_equals_naive(inputs, activation):
    assert_close(gated_mlp(*inputs, activation), gated_mlp_naive(*inputs, activation))


@pytest.mark.parametrize("activation, hidden_act", [("silu", "silu"), ("gelu", "gelu"),
                                                    ("gelu_tanh", "gelu_pytorch_tanh")])
def test_gated_mlp_is_hugging_faces_llama_mlp(activation, hidden_act):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    config = llama.LlamaConfig(hidden_size=8, intermediate_size=20, hidden_act=hidden_act,
                               num_attention_heads=2, num_key_value_heads=2)
    torch.manual_seed(0)
    mlp = llama.LlamaMLP(config).double()
    x = torch.randn(2, 5, 8, dtype=f64)
    ours = gated_mlp(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight, activation)
    assert_close(ours, mlp(x), kind="impl")


def test_gated_units_pass_gradcheck_in_float64():
    gen = torch.Generator().manual_seed(5)
    x, wg, wu = (torch.randn(*s, generator=gen, dtype=f64, requires_grad=True)
                 for s in ((3, 4), (6, 4), (6, 4)))
    wd = torch.randn(4, 6, generator=gen, dtype=f64, requires_grad=True)
    for activation in ("silu", "gelu", "gelu_tanh"):
        def mlp(*a, activation=activation):
            return gated_mlp(*a, activation)
        assert torch.autograd.gradcheck(mlp, (x, wg, wu, wd))
        assert torch.autograd.gradgradcheck(mlp, (x, wg, wu, wd))


@pytest.mark.parametrize("call, error, words", [
    (lambda: gelu(torch.ones(2), "erf"), ValueError, "approximate"),
    (lambda: gelu(torch.ones(2, dtype=torch.int64)), TypeError, "input must be a floating"),
    (lambda: swiglu(torch.ones(2, 3), torch.ones(3)), ValueError,
     "gate and up must have one shape"),
    (lambda: geglu(torch.ones(3), torch.ones(3, dtype=f64)), TypeError, "must share one dtype"),
    (lambda: gated_mlp(torch.ones(2, 4), torch.ones(6, 4), torch.ones(6, 4), torch.ones(6, 4)),
     ValueError, "w_down must have shape (4, 6)"),
    (lambda: gated_mlp(torch.ones(2, 4), torch.ones(6, 3), torch.ones(6, 4), torch.ones(4, 6)),
     ValueError, "w_gate must have shape (6, 4)"),
    (lambda: gated_mlp(torch.ones(2, 4), torch.ones(6, 4), torch.ones(6, 4), torch.ones(4, 6),
                       "relu"), ValueError, "activation"),
])
def test_bad_arguments_are_named(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)
