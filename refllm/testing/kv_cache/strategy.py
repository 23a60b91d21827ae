"""Decoding problems for `check_kv_cache`: a left-padded batch and its split into decoding steps.

A `KVProblem` holds token ids (b, T), a mask (b, T) (True = real; each row: p_r pads, then
T - p_r >= 1 real tokens) and the step sizes (n_1, ..., n_k), sum T: the first step is the
prompt, each later one feeds 1 token or several. Drawn: b in [1, 3], T in [1, min(n_ctx, 24)]
(the key axis, padding included, never exceeds the window), per-row padding in [0, T - 1] (no
padding one row in seven), a prompt of 1..T tokens, then 1-token steps or, one problem in two,
steps of 1..4 tokens.
"""

from __future__ import annotations

import dataclasses

import torch
from hypothesis import strategies as st

from refllm.testing.engine.case import to_source
from refllm.testing.engine.odds import sizes, sometimes

MAX_LEN = 24


@dataclasses.dataclass
class KVProblem:
    ids: torch.Tensor  # (b, T) int64
    mask: torch.Tensor  # (b, T) bool, True = real token, left padding
    steps: tuple[int, ...]  # tokens fed per step, summing to T

    def chunks(self) -> list[tuple[int, int]]:
        """(start, stop) of each step along T."""
        out, start = [], 0
        for n in self.steps:
            out.append((start, start + n))
            start += n
        return out

    def to(self, device: str | torch.device) -> KVProblem:
        return dataclasses.replace(self, ids=self.ids.to(device), mask=self.mask.to(device))

    def snippet(self) -> str:
        return (f"ids = {to_source(self.ids)}\nmask = {to_source(self.mask)}\n"
                f"steps = {self.steps!r}")


@st.composite
def kv_problems(draw: st.DrawFn, vocab_size: int, n_ctx: int, max_batch: int = 3,
                max_len: int = MAX_LEN) -> KVProblem:
    """A `KVProblem` within ``n_ctx`` keys and token ids in [0, vocab_size)."""
    b = draw(st.integers(1, max_batch))
    T = draw(sizes(min(n_ctx, max_len)))
    pads = [draw(sometimes(st.just(0), otherwise=st.integers(0, T - 1))) for _ in range(b)]
    mask = torch.arange(T)[None, :] >= torch.tensor(pads)[:, None]
    tokens = draw(st.lists(st.integers(0, vocab_size - 1), min_size=b * T, max_size=b * T))
    ids = torch.tensor(tokens, dtype=torch.int64).reshape(b, T)
    steps = [draw(st.integers(1, T))]
    several = draw(st.booleans())
    while sum(steps) < T:
        left = T - sum(steps)
        steps.append(draw(st.integers(1, min(4, left))) if several else 1)
    return KVProblem(ids, mask, tuple(steps))


__all__ = ["KVProblem", "kv_problems", "MAX_LEN"]
