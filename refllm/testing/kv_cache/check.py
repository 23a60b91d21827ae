"""`check_kv_cache`: incremental decoding through a KV cache equals the full forward.

    logits_full = forward(x_{1..T}, m_{1..T})
    logits_step_k = step(x_{a_k..b_k}, m_{1..b_k}, cache_{k-1})       for the steps 1..K
    concat_k logits_step_k == logits_full        at every real position (m = True)

(the KV cache of Vaswani et al. 2017's decoder, as GPT-2 and every serving engine use it: keys and
values of earlier tokens are kept, not recomputed). Hypothesis draws a left-padded batch, its split
into a prompt and later steps of one or several tokens, and the tokens (strategies.kv_cache); the
decoder is driven through the step interface of :mod:`refllm.testing.kv_cache.adapters`.

Properties: "raises on valid input" (step or forward raised), "logits shape" (a step returned
other than (b, t, v)), "incremental logits" (the stacked steps differ from the full forward).

Deviation: padded positions are not compared. What a padded query attends to is a convention
(refllm lets it see itself, transformers lets it see nothing and averages), and its logits are
never used; every real position, in every row and step, is compared.

Tolerance: the policy of :mod:`refllm.testing.engine.policy` with the full forward as the
reference. A module (refllm GPT, transformers model) is run on a copy cast to ``dtype``; below
float64, the full forward of a float64 copy is the reference and the same-dtype full forward the
plain computation. A step function runs as given; its own full forward is then both.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.calls import call_guarded, describe_exception
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.policy import Verdict, compare
from refllm.testing.engine.record import OpRecord
from refllm.testing.engine.report import Report
from refllm.testing.engine.search import Outcome
from refllm.testing.engine.targets import import_lines
from refllm.testing.kv_cache.adapters import ForwardFn, KVDecoder, as_decoder
from refllm.testing.kv_cache.record import RECORD
from refllm.testing.kv_cache.strategy import MAX_LEN, KVProblem, kv_problems

PROPERTIES = ["raises on valid input", "logits shape", "incremental logits"]


@dataclasses.dataclass
class KVCacheSpec:
    op: str
    decoder: KVDecoder
    reference: KVDecoder | None  # a float64 copy, for modules checked below float64
    target: str
    dtype: torch.dtype
    device: str
    max_len: int
    properties: list[str] = dataclasses.field(default_factory=lambda: list(PROPERTIES))
    label: str = ""  # the report's target when it cannot be imported by name

    def strategy(self) -> st.SearchStrategy:
        return kv_problems(self.decoder.vocab_size, self.decoder.n_ctx, max_len=self.max_len)

    def case_of(self, problem: KVProblem) -> KVProblem:
        return problem

    def evaluate(self, problem: KVProblem) -> list[Outcome]:
        p = problem.to(self.device)
        with torch.no_grad():
            full, exc = call_guarded(lambda: self.decoder.forward(p.ids, p.mask))
            if exc is not None:
                return [Outcome(PROPERTIES[0], False, "the full forward raised " +
                                describe_exception(exc))]
            b, T = p.ids.shape
            if tuple(full.shape) != (b, T, self.decoder.vocab_size):
                return [Outcome(PROPERTIES[0], True), Outcome(
                    PROPERTIES[1], False, f"the full forward returned logits of shape "
                    f"{tuple(full.shape)}, expected (b, T, v) = {(b, T, self.decoder.vocab_size)}")]
            parts, failed = self._steps(p, full)
            if failed is not None:
                return failed
            expected = full if self.reference is None else \
                self.reference.forward(problem.ids, problem.mask)
        return [Outcome(PROPERTIES[0], True), Outcome(PROPERTIES[1], True),
                self._judge(problem, torch.cat(parts, dim=1), expected, full)]

    def _steps(self, p: KVProblem, full: torch.Tensor) -> tuple[list, list[Outcome] | None]:
        b, v = p.ids.shape[0], full.shape[-1]
        cache: Any = None
        parts: list[torch.Tensor] = []
        for k, (a, z) in enumerate(p.chunks()):
            out, exc = call_guarded(functools.partial(self.decoder.step, p.ids[:, a:z],
                                                      p.mask[:, :z], cache))
            if exc is not None:
                return parts, [Outcome(PROPERTIES[0], False, f"step {k + 1} (tokens {a}..{z - 1})"
                                       f" raised " + describe_exception(exc))]
            logits, cache = out
            if tuple(logits.shape) != (b, z - a, v):
                return parts, [Outcome(PROPERTIES[0], True), Outcome(
                    PROPERTIES[1], False, f"step {k + 1} (tokens {a}..{z - 1}) returned logits "
                    f"of shape {tuple(logits.shape)}, expected (b, t, v) = {(b, z - a, v)}")]
            parts.append(logits)
        return parts, None

    def _judge(self, problem: KVProblem, actual: torch.Tensor, expected: torch.Tensor,
               plain: torch.Tensor) -> Outcome:
        pad = ~problem.mask[:, :, None]
        a = actual.detach().cpu().double().masked_fill(pad, 0.0)
        e = expected.detach().cpu().double().masked_fill(pad, 0.0)
        p = plain.detach().cpu().double().masked_fill(pad, 0.0)
        verdict = compare(a, e, dtype=self.dtype, plain=p)
        if verdict.passed:
            return Outcome(PROPERTIES[2], True, verdict=verdict)
        row, pos = verdict.index[:2] if verdict.index else (0, 0)
        k = next(i for i, (s, z) in enumerate(problem.chunks()) if s <= pos < z)
        return Outcome(PROPERTIES[2], False, f"the stacked step logits differ from the full "
                       f"forward at row {row}, position {pos} (step {k + 1} of "
                       f"{len(problem.steps)}, steps {problem.steps}; index: row, position, "
                       f"vocabulary)", verdict)

    def snippet(self, problem: KVProblem, failed: list[str]) -> str:
        return SNIPPET.format(target=self.target or "your decoder", failed=", ".join(failed),
                              import_model=import_lines(self.target, "model"),
                              problem=problem.snippet(), dtype=self.dtype)


SNIPPET = '''\
# refllm oracle repro: KV-cache decoding of {target} differs from its full forward
# failing: {failed}
import torch

{import_model}
from refllm.testing.kv_cache.adapters import as_decoder

decoder = as_decoder(model)  # for a step function: as_decoder(step, vocab_size=..., n_ctx=...)
{problem}
# a module is checked as a copy cast to the dtype: model.to({dtype})
with torch.no_grad():
    full = decoder.forward(ids, mask)
    cache, parts = None, []
    for start, n in zip([sum(steps[:i]) for i in range(len(steps))], steps):
        logits, cache = decoder.step(ids[:, start:start + n], mask[:, :start + n], cache)
        parts.append(logits)
error = (torch.cat(parts, dim=1) - full).abs().amax(-1).masked_fill(~mask, 0.0)
print("max abs error per (row, position); padded positions zeroed:")
print(error)
'''


def check_kv_cache(model_or_step_fn: Any, *, forward: ForwardFn | None = None,
                   vocab_size: int | None = None, n_ctx: int | None = None,
                   new_cache: Callable[[], Any] | None = None,
                   dtype: torch.dtype | str = torch.float64, max_len: int = MAX_LEN,
                   **options: Any) -> Report:
    """Check that cached incremental decoding gives the full forward's logits.

    ``model_or_step_fn``: a refllm GPT (or any module with ``forward(ids, *, attention_mask,
    cache)``; ``new_cache`` makes its empty cache when the type cannot be read from it), a
    transformers causal LM such as ``GPT2LMHeadModel`` (through
    `refllm.testing.kv_cache.adapters.hf_step`), a
    `KVDecoder`, or a step function ``step(ids, attention_mask, cache) -> (logits, cache)`` with
    ``vocab_size``, ``n_ctx`` and optionally ``forward(ids, attention_mask) -> logits`` (default:
    one step from an empty cache), or ``"module:name"`` of any of these. Modules are checked as an
    eval-mode copy in ``dtype`` (default float64) on ``device``. ``max_len``: the longest sequence
    drawn (capped by n_ctx). The other options are every check's
    (`refllm.testing.engine.options.CheckOptions`: see `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, model_or_step_fn, forward=forward, vocab_size=vocab_size, n_ctx=n_ctx,
                 new_cache=new_cache, dtype=dtype, max_len=max_len, **options)


def build(record: OpRecord, ctx: CheckContext) -> KVCacheSpec:
    """The spec of one KV-cache check (the record's ``build`` hook)."""
    extra = {k: ctx.extra.get(k) for k in ("vocab_size", "n_ctx", "new_cache")}
    max_len = ctx.extra.get("max_len", MAX_LEN)
    dtype, device, target_obj = ctx.dtype, ctx.device, ctx.impl
    reference = None
    if isinstance(target_obj, torch.nn.Module):
        module = copy.deepcopy(target_obj).to(device=device, dtype=dtype).eval()
        if dtype != torch.float64:
            ref = copy.deepcopy(target_obj).to(device="cpu", dtype=torch.float64).eval()
            reference = as_decoder(ref, **extra)
        target_obj = module
    decoder = as_decoder(target_obj, forward=ctx.extra.get("forward"), **extra)
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive sequence length, got {max_len!r}")
    return KVCacheSpec(op="kv-cache", decoder=decoder, reference=reference, target=ctx.target,
                       dtype=dtype, device=device, max_len=max_len, label=decoder.name)


__all__ = ["check_kv_cache", "KVCacheSpec", "PROPERTIES", "Verdict"]
