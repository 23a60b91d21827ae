"""`check_multihead_attention`: any module class with ``torch.nn.MultiheadAttention``'s interface.

    MultiHead(Q, K, V) = Concat(head_1, ..., head_h) W^O,  head_i = Attention(Q W_i^Q, K W_i^K,
    V W_i^V)                                                (Vaswani et al. 2017, §3.2.2)

On each example drawn by :func:`refllm.testing.multihead.strategy.multihead_cases` (constructor
keywords, weights under PyTorch's parameter names, one forward call):

1. the user's class is built as ``cls(**init_kwargs, dtype=dtype, device=device)`` (dropout 0),
   the case's ``state_dict`` (cast to ``dtype``) is loaded with ``load_state_dict``, and the module
   is called in training mode with autograd on;
2. refllm's :class:`refllm.nn.multihead.MultiheadAttention` runs the same case upcast to float64;
3. compared: the output, the attention weights (when ``need_weights``), the gradients wrt query,
   key and value and wrt every parameter (under random upstream gradients of the output and of
   the weights), and the output of the module in eval mode under ``torch.no_grad()`` (where
   PyTorch may take its fused "fast path").

Fully masked query rows (every key masked by ``attn_mask``/``key_padding_mask``, with no
``add_bias_kv``/``add_zero_attn`` key): ``torch.nn.MultiheadAttention`` gives NaN there on some
paths and zeros on others (PyTorch 2.13: NaN with ``need_weights=True``, zeros through SDPA),
refllm zeros. So they are not drawn by default; add the feature ``"fully_masked_rows"`` to
require refllm's zeros there (PyTorch's module fails that, by design).

Not drawn either: ``is_causal=True`` together with ``add_bias_kv`` or ``add_zero_attn``. There
PyTorch disagrees with itself: with ``need_weights=True`` it applies ``attn_mask`` (padded with a
column, so the extra key takes part, as refllm does), with ``need_weights=False`` it drops the
mask and calls SDPA with ``is_causal=True``, which masks the extra key from early queries.

The default call (``MultiheadAttention(c, h)`` called as ``module(x, x, x)`` and with s != t) is
judged first on fixed inputs, then drawn in about one example in five (docs/oracle.md, "The
default call").

Tolerance: :mod:`refllm.testing.engine.policy` (fixed bound for float32/float64, else the error of
refllm's module run in the checked dtype times a factor).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.engine.calls import call_guarded, describe_exception
from refllm.testing.engine.case import to_source
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.function import _judge, _upstream
from refllm.testing.engine.gradients import gradients
from refllm.testing.engine.record import OpRecord
from refllm.testing.engine.report import Report
from refllm.testing.engine.search import Outcome
from refllm.testing.engine.targets import import_lines
from refllm.testing.engine.tolerances import LOW_PRECISION_GRAD_FACTOR
from refllm.testing.multihead.record import RECORD

MULTIHEAD_FEATURES = ("kdim_vdim", "bias", "add_bias_kv", "add_zero_attn", "key_padding_mask",
                      "attn_mask", "need_weights", "fully_masked_rows")
"""Features `check_multihead_attention` can exercise: key/value widths other than embed_dim
("kdim_vdim"), projection biases, ``add_bias_kv``, ``add_zero_attn``, ``key_padding_mask``,
``attn_mask`` (2-D, 3-D, bool, float, causal with ``is_causal``), ``need_weights`` (with
``average_attn_weights``) and queries whose every key is masked ("fully_masked_rows")."""

DEFAULT_MULTIHEAD_FEATURES = tuple(f for f in MULTIHEAD_FEATURES if f != "fully_masked_rows")
"""All features but "fully_masked_rows" (see the module docs)."""

DRAWN_SEQ_CAP = 65
"""The longest drawn t and s (the fixed kernel-sized calls go to 150) unless a contract sets
``sizes``/``max_seq``. Beyond it the tolerance policy's same-dtype rule (4 x refllm's float32
error) raised false alarms on ``nn.MultiheadAttention``'s fused path: at t = s = 128 in float32
its query and key-weight gradients erred 1.1 x beyond it in 2 of 48 runs (seeds 14 and 47), a
rounding difference of long sums that only an a-priori error model of the module can tell from
a bug (docs/oracle.md, "Kernel-sized inputs")."""

Leaves = dict[str, torch.Tensor]


@dataclasses.dataclass
class MultiheadSpec:
    op: str
    cls: Callable[..., torch.nn.Module]
    target: str
    dtype: torch.dtype
    device: str
    cases: st.SearchStrategy
    grads: bool = True
    explicit: list[Any] = dataclasses.field(default_factory=list)  # judged before the search
    features: tuple[str, ...] | None = None  # what the report lists (what the contract left)
    # exceptions with which the target refuses an input: reported as unsupported (a contract's)
    unsupported: tuple[type[BaseException], ...] = (NotImplementedError,)
    properties: list[str] = dataclasses.field(default_factory=lambda: [
        "raises on valid input", "output shape", "finite output", "forward output",
        "attention weights", "eval-mode output", "grad wrt query", "grad wrt key",
        "grad wrt value"])

    def strategy(self) -> st.SearchStrategy:
        return st.tuples(self.cases, st.integers(0, 2**31 - 1))

    def case_of(self, drawn: tuple[Any, int]) -> Any:
        return drawn[0].to(self.dtype)

    def _call(self, cls: Any, case: Any, dtype: torch.dtype,
              device: str) -> tuple[torch.nn.Module, Any, Any, Leaves]:
        """Build, load and call the module (training mode); its outputs and input leaves."""
        module = case.build(cls, dtype=dtype, device=device)
        module.train()
        q, k, v = (x.detach().to(device, dtype) for x in case.forward.args)
        kw = {n: (x.to(device) if isinstance(x, torch.Tensor) else x)
              for n, x in case.forward.kwargs.items()}
        leaves: Leaves = {}
        if self.grads:
            q, k, v = q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
            leaves = {"query": q, "key": k, "value": v}
        out, weights = module(q, k, v, **kw)
        return module, out, weights, leaves

    def _forward(self, cls: Any, case: Any, dtype: torch.dtype, device: str,
                 g: tuple[torch.Tensor, torch.Tensor | None] | None):
        """Build, load, call (training mode); the outputs and the grads by leaf name."""
        module, out, weights, leaves = self._call(cls, case, dtype, device)
        grads: dict[str, torch.Tensor | None] = {}
        if self.grads and g is not None:
            g_weights = g[1]
            with_weights = (weights is not None and g_weights is not None
                            and weights.shape == g_weights.shape)
            ups = [g[0].to(device, out.dtype)]
            if with_weights and g_weights is not None:
                ups.append(g_weights.to(device, weights.dtype))

            def tensors(m: torch.nn.Module, o: Any, w: Any, lv: Leaves) -> tuple[list, list]:
                return [o, w] if with_weights else [o], list(lv.values()) + list(m.parameters())

            def rerun() -> tuple[list, list]:  # reentrant checkpointing: see _gradients
                return tensors(*self._call(cls, case, dtype, device))

            names = list(leaves) + [f"parameter {n!r}" for n, _ in module.named_parameters()]
            got = gradients(*tensors(module, out, weights, leaves), ups, rerun)
            grads = dict(zip(names, got))
        return module, out, weights, grads

    def evaluate(self, drawn: tuple[Any, int]) -> list[Outcome]:
        from refllm.nn.multihead import MultiheadAttention

        case = drawn[0].to(self.dtype)
        ref_case = case.to(torch.float64)
        _, exp_out, exp_w, _ = self._forward(MultiheadAttention, ref_case, torch.float64, "cpu",
                                             None)
        g = (_upstream(exp_out, drawn[1], self.dtype),
             None if exp_w is None else _upstream(exp_w, drawn[1] + 1, self.dtype))
        _, _, _, exp_grads = self._forward(MultiheadAttention, ref_case, torch.float64, "cpu", g)
        result, exc = call_guarded(lambda: self._forward(self.cls, case, self.dtype,
                                                         self.device, g))
        if exc is not None:
            return [Outcome("raises on valid input", False, describe_exception(exc))]
        module, out, weights, grads = result
        outcomes = [Outcome("raises on valid input", True)]
        if not isinstance(out, torch.Tensor) or out.shape != exp_out.shape:
            seen = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            return outcomes + [Outcome("output shape", False, f"got {seen}, expected "
                                                               f"{tuple(exp_out.shape)}")]
        outcomes.append(Outcome("output shape", True))
        plain = _PlainModule(self, case, g)
        outcomes += _judge("forward output", out, exp_out, self.dtype, lambda: plain()[0],
                           finite="finite output")
        outcomes += self._judge_weights(weights, exp_w, plain)
        outcomes += self._judge_eval(module, case, exp_out, plain)
        for name, e in exp_grads.items():
            if e is not None:
                outcomes += self._judge_grad(name, grads, e, plain)
        return outcomes

    def _judge_weights(self, w: Any, e: torch.Tensor | None, plain: Any) -> list[Outcome]:
        if e is None:  # need_weights=False: PyTorch returns None
            return [] if w is None else [Outcome("attention weights", False, "weights returned "
                                                 "with need_weights=False (expected None)")]
        if not isinstance(w, torch.Tensor) or w.shape != e.shape:
            seen = tuple(w.shape) if isinstance(w, torch.Tensor) else repr(w)
            return [Outcome("attention weights", False, f"weights of shape {seen}, expected "
                                                        f"{tuple(e.shape)}")]
        return _judge("attention weights", w, e, self.dtype, lambda: plain()[1])

    def _judge_eval(self, module: torch.nn.Module, case: Any, e: torch.Tensor,
                    plain: Any) -> list[Outcome]:
        def call() -> Any:
            module.eval()
            args = tuple(x.detach().to(self.device, self.dtype) for x in case.forward.args)
            if all(a.shape == args[0].shape and torch.equal(a, args[0]) for a in args):
                args = (args[0], args[0], args[0])  # self-attention: PyTorch's fast path
            kw = {n: (x.to(self.device) if isinstance(x, torch.Tensor) else x)
                  for n, x in case.forward.kwargs.items()}
            with torch.no_grad():
                return module(*args, **kw)[0]

        out, exc = call_guarded(call)
        if exc is not None:
            return [Outcome("eval-mode output", False, "raises in eval mode under no_grad: "
                                                       + describe_exception(exc))]
        if not isinstance(out, torch.Tensor) or out.shape != e.shape:
            return [Outcome("eval-mode output", False, "eval-mode output of another shape")]
        return _judge("eval-mode output", out, e, self.dtype, lambda: plain()[0])

    def _judge_grad(self, name: str, grads: dict[str, torch.Tensor | None], e: torch.Tensor,
                    plain: Any) -> list[Outcome]:
        prop = f"grad wrt {name}"
        if name not in grads:
            return [Outcome(prop, False, f"the module has no {name} (PyTorch's names are "
                                         "expected, so that load_state_dict works)")]
        a = grads[name]
        if a is None:
            return [Outcome(prop, False, "no gradient: the output does not depend on it")]
        if a.shape != e.shape:
            return [Outcome(prop, False, f"gradient of shape {tuple(a.shape)}, expected "
                                         f"{tuple(e.shape)}")]
        return _judge(prop, a, e, self.dtype, lambda: plain()[2][name],
                      factor=LOW_PRECISION_GRAD_FACTOR)

    def snippet(self, drawn: tuple[Any, int], failed: list[str]) -> str:
        case = drawn[0].to(self.dtype)
        init = {k: v for k, v in case.init_kwargs.items() if k != "dtype"}
        return SNIPPET.format(target=self.target or repr(self.cls), failed=", ".join(failed),
                              import_cls=import_lines(self.target, "Module", self.cls),
                              init=to_source(init), state=to_source(case.state_dict),
                              args=to_source(case.forward.args),
                              kwargs=to_source(case.forward.kwargs),
                              dtype=self.dtype, device=self.device)


class _PlainModule:
    """refllm's module run in the checked dtype (the policy's same-dtype reference), lazily."""

    def __init__(self, spec: MultiheadSpec, case: Any, g: Any):
        self.spec, self.case, self.g = spec, case, g
        self.value: tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]] | None = None

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor | None, dict[str, Any]]:
        from refllm.nn.multihead import MultiheadAttention

        if self.value is None:
            _, out, w, grads = self.spec._forward(MultiheadAttention, self.case,
                                                  self.spec.dtype, "cpu", self.g)
            self.value = (out, w, grads)
        return self.value


SNIPPET = '''\
# refllm oracle repro: multi-head attention {target} disagrees with refllm's float64 module
# failing: {failed}
import torch

{import_cls}
from refllm.nn.multihead import MultiheadAttention as Reference

dtype, device = {dtype}, {device!r}
init_kwargs = {init}
state = {state}
args = {args}
kwargs = {kwargs}


def run(cls, dtype, device):
    module = cls(**init_kwargs, dtype=dtype, device=device).train()
    module.load_state_dict(state)
    kw = {{n: x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
          if isinstance(x, torch.Tensor) else x for n, x in kwargs.items()}}
    return module(*[a.to(device=device, dtype=dtype) for a in args], **kw)


out, weights = run(Module, dtype, device)
expected, expected_weights = run(Reference, torch.float64, "cpu")
max_abs_error = {{"forward output": (out.detach().cpu().double() - expected).abs().max().item()}}
if weights is not None and expected_weights is not None:
    max_abs_error["attention weights"] = (
        weights.detach().cpu().double() - expected_weights).abs().max().item()
print(max_abs_error)
'''


def check_multihead_attention(module: Callable[..., torch.nn.Module] | str, *,
                              features: Iterable[str] | None = None, **options: Any) -> Report:
    """Check a ``torch.nn.MultiheadAttention``-compatible class (or ``"module:Class"``).

    The class is constructed with the drawn constructor keywords plus ``dtype`` and ``device``,
    loaded with the drawn weights (PyTorch's parameter names), and compared with refllm's float64
    module: output, weights, eval-mode output and the gradients wrt query, key, value and every
    parameter (see the module docs). ``features``: which of :data:`MULTIHEAD_FEATURES` to
    exercise (default: :data:`DEFAULT_MULTIHEAD_FEATURES`). ``contract``: a
    `refllm.testing.contract.Contract` (``masks``, ``causal``, ``max_seq``, ``sizes`` of b, h,
    t, s, ``fully_masked_rows`` "zeros" or "avoid", ``dtypes``, ``long_axes``, ``budget``,
    ``unsupported``). The other options are every check's
    (`refllm.testing.engine.options.CheckOptions`: see `refllm.testing.checks.check_sdpa`).
    """
    return check(RECORD, module, features=features, **options)


def build(record: OpRecord, ctx: CheckContext) -> MultiheadSpec:
    """The spec of one multi-head attention check (the record's ``build`` hook)."""
    from refllm.testing.multihead.strategy import multihead_cases, multihead_default_calls

    chosen, c, max_size, grads = ctx.features, ctx.contract, ctx.max_size, ctx.grads
    if c.fully_masked_rows == "nan":
        raise ValueError("contract fully_masked_rows='nan' is not judged for multi-head "
                         "attention (PyTorch's module itself gives NaN on some paths and zeros "
                         "on others); use 'avoid' (the default) or 'zeros'")
    if c.fully_masked_rows is not None:
        chosen = tuple(f for f in chosen if f != "fully_masked_rows") + (
            ("fully_masked_rows",) if c.fully_masked_rows == "zeros" else ())
    flags = {f: f in chosen for f in MULTIHEAD_FEATURES[:-1]}
    ranges = c.ranges("multihead")
    for axis in ("t", "s"):  # the drawn tier's lengths, unless the contract gives its own
        ranges.setdefault(axis, (1, DRAWN_SEQ_CAP))
    cases = multihead_cases(dtype=torch.float64, max_size=max_size,
                            causal_extra_keys=False, write_defaults=False,
                            long_axes=c.long_axes, budget=c.budget, sizes=ranges,
                            masks=c.masks, causal=c.causal, **flags)
    if "fully_masked_rows" not in chosen:
        cases = cases.filter(lambda c: not bool(c.fully_masked_rows().any()))
    spec = MultiheadSpec(op="multihead", cls=ctx.impl, target=ctx.target, dtype=ctx.dtype,
                         device=ctx.device, cases=cases, grads=grads)
    defaults = multihead_default_calls(bias="bias" in chosen,
                                       need_weights="need_weights" in chosen, max_size=max_size,
                                       sizes=c.ranges("multihead"),
                                       long=c.long_axes, budget=c.budget)

    def inside(case: Any) -> bool:  # the fixed calls a contract and the features allow
        causal_call = bool(case.forward.kwargs.get("is_causal"))
        if c.causal == "only":
            return causal_call and c.masks != "additive"
        return not causal_call or (c.causal == "optional" and "attn_mask" in chosen
                                   and c.masks in ("any", "bool"))

    defaults = [d for d in defaults if inside(d)]
    spec.explicit = [(case, i) for i, case in enumerate(defaults)]
    spec.unsupported = c.unsupported
    if not grads:
        spec.properties = [p for p in spec.properties if not p.startswith("grad")]
    spec.features = chosen  # the report's features: as the contract left them
    return spec


__all__ = ["DEFAULT_MULTIHEAD_FEATURES", "MULTIHEAD_FEATURES", "check_multihead_attention"]
