"""Training throughput of refllm's GPT against a plain nanoGPT-style model of the same shape.

One training step (forward, backward, optimizer step) of ``batch x seq_len`` tokens is timed for
three contestants, interleaved in the same run:

* ``nanogpt-plain`` (baseline): the model below, nanoGPT's ``model.py`` reduced to what refllm's
  GPT computes (pre-LN, fused SDPA, tanh GELU, tied embeddings), with torch.optim.AdamW;
* ``refllm-gpt`` (target: >= 95% of the baseline's tokens/s, i.e. time ratio <= 1/0.95, as the
  median of per-round ratios with the baseline interleaved round by round): refllm's
  GPT (attention="fused") with the same torch.optim.AdamW: the model's own cost;
* ``refllm-train-step``: one step of refllm's training loop (batch drawing, token-weighted loss,
  clipping, refllm's AdamW, the schedule): what a run pays per step (no target; shown).

Before timing, the two models are given the same weights and must give the same logits. Model FLOP
utilisation (MFU) = 3 · flops_per_token(exact) · tokens / step time, divided by a float32 (bf16 on
CUDA) matmul rate measured in the same run; it is printed and kept in the benchmark's extra_info.
"""

from __future__ import annotations

import copy
import math
import pathlib
import tempfile
import time

import pytest
import torch
import torch.nn.functional as F
from benchutil import compare
from torch import nn

from refllm.data import load_tokens
from refllm.model import GPT, GPTConfig, flops_per_token
from refllm.testing import assert_close
from refllm.train import TrainConfig

SHAPES = {"cpu": dict(n_layer=2, n_head=4, d_model=128, seq_len=128, batch=8),
          "cuda": dict(n_layer=6, n_head=8, d_model=512, seq_len=512, batch=16)}
VOCAB = 256


class PlainBlock(nn.Module):
    def __init__(self, c: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.attn = nn.Module()
        self.attn.c_attn, self.attn.c_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class PlainGPT(nn.Module):
    """nanoGPT's GPT, no dropout, parameter names as refllm's (so weights can be shared)."""

    def __init__(self, vocab: int, n_ctx: int, n_layer: int, n_head: int, c: int) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, c), wpe=nn.Embedding(n_ctx, c),
            h=nn.ModuleList(PlainBlock(c, n_head) for _ in range(n_layer)), ln_f=nn.LayerNorm(c)))
        self.lm_head = nn.Linear(c, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def _models(shape: dict, device: str) -> tuple[nn.Module, nn.Module, GPTConfig]:
    config = GPTConfig(vocab_size=VOCAB, n_ctx=shape["seq_len"], n_layer=shape["n_layer"],
                       n_head=shape["n_head"], d_model=shape["d_model"], attention="fused")
    torch.manual_seed(0)
    ours = GPT(config).to(device)
    plain = PlainGPT(VOCAB, shape["seq_len"], shape["n_layer"], shape["n_head"],
                     shape["d_model"]).to(device)
    plain.load_state_dict(ours.state_dict())
    return ours, plain, config


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _matmul_rate(device: str) -> float:
    """FLOP/s of a square matmul (float32 on CPU, bf16 on CUDA), best of a few."""
    n = 1024 if device == "cpu" else 8192
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    best = math.inf
    for _ in range(5):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def _step_fn(model: nn.Module, device: str, shape: dict):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, VOCAB, (shape["batch"], shape["seq_len"] + 1), generator=g).to(device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else None

    def step() -> None:
        with amp if amp is not None else torch.autocast("cpu", enabled=False):
            logits = model(idx[:, :-1])
        loss = F.cross_entropy(logits.float().flatten(0, 1), idx[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)

    return step


def _loop_step_fn(shape: dict, device: str):
    from refllm.train.distributed import Dist
    from refllm.train.loop import _Run

    config = TrainConfig(model={"n_layer": shape["n_layer"], "n_head": shape["n_head"],
                                "d_model": shape["d_model"]}, data="stdlib",
                         max_bytes=2_000_000, batch_size=shape["batch"],
                         seq_len=shape["seq_len"], max_steps=10**6, device=device)
    out = pathlib.Path(tempfile.mkdtemp())
    run = _Run(config, out, Dist(), torch.device(device), load_tokens("stdlib",
               max_bytes=2_000_000), resume=False)

    def step() -> None:
        run._one_step()
        run.step += 1
        _sync(device)

    return step


DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["nanogpt-plain", "refllm-gpt", "refllm-train-step"])
def test_training_step_throughput(benchmark, device, name):
    shape = SHAPES[device]
    ours, plain, config = _models(shape, device)
    idx = torch.randint(0, VOCAB, (2, shape["seq_len"]), device=device)
    with torch.no_grad():
        assert_close(ours(idx), plain(idx), kind="impl", dtype=torch.float32)
    step = {"nanogpt-plain": lambda: _step_fn(plain, device, shape),
            "refllm-gpt": lambda: _step_fn(ours, device, shape),
            "refllm-train-step": lambda: _loop_step_fn(shape, device)}[name]()
    s = shape
    group = f"train-step-{device}-L{s['n_layer']}c{s['d_model']}t{s['seq_len']}b{s['batch']}"
    benchmark.group = group
    if name != "nanogpt-plain":  # the ratio: interleaved with a fresh baseline, round by round
        base = _step_fn(copy.deepcopy(plain), device, shape)  # same weights: same arithmetic
        for _ in range(3):  # warm both up before the rounds
            step(), base()
        row = compare(group, name, "nanogpt-plain", step, base,
                      target=1 / 0.95 if name == "refllm-gpt" else None,
                      rounds=15 if device == "cpu" else 30, cpu_rounds=5 if device == "cpu" else 0)
        benchmark.extra_info.update(row)
    benchmark.pedantic(step, rounds=15 if device == "cpu" else 30, iterations=1,
                       warmup_rounds=3)
    tokens = s["batch"] * s["seq_len"]
    rate = tokens / benchmark.stats.stats.median
    mfu = 3 * flops_per_token(config, method="exact") * rate / _matmul_rate(device)
    benchmark.extra_info.update({"tokens_per_s": rate, "mfu": mfu})
    print(f"\n{name} on {device}: {rate:,.0f} tokens/s, MFU {mfu:.1%}")
    assert 0 < mfu < 1.5


@pytest.mark.parametrize("device", DEVICES)
def test_refllm_gpt_keeps_95_percent_of_the_plain_models_throughput_interleaved(device):
    """Steps of the two models alternate (A B A B ...), so machine load hits both alike; the best
    step time of each is compared (the least disturbed by other processes)."""
    shape = SHAPES[device]
    ours, plain, _ = _models(shape, device)
    steps = {"refllm": _step_fn(ours, device, shape), "plain": _step_fn(plain, device, shape)}
    times: dict[str, list[float]] = {"refllm": [], "plain": []}
    for i in range(24 if device == "cpu" else 60):
        for name in (("refllm", "plain") if i % 2 else ("plain", "refllm")):
            start = time.perf_counter()
            steps[name]()
            times[name].append(time.perf_counter() - start)
    best = {k: min(v[3:]) for k, v in times.items()}  # the first rounds warm up
    ratio = best["plain"] / best["refllm"]  # refllm's tokens/s as a share of the plain model's
    print(f"\n{device}: refllm GPT at {ratio:.1%} of the plain model's tokens/s "
          f"(best step {best['refllm'] * 1e3:.1f} ms vs {best['plain'] * 1e3:.1f} ms)")
    assert ratio >= 0.95
