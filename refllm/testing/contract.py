"""`Contract`: what a real kernel supports, so that a check draws only inputs inside it.

A fused kernel implements part of PyTorch's contract: only 4-D inputs in one layout, a few head
dims, bf16/fp16, causal attention only, no arbitrary masks, a longest sequence. Checked against
PyTorch's whole contract it "fails" on the first input it was never meant to take, and the search
stops there. A `Contract` states the part it supports; the checks (``check_sdpa(fn,
contract=...)``, ``check_multihead_attention``, ``check_cross_entropy``, ``check_mse``,
``check_optimizer``) then draw only inside it, at the kernel's real sizes, and report what the
kernel refuses with one of ``unsupported`` as "unsupported" rather than as a wrong answer.

>>> import torch
>>> c = Contract(layout="bthd", head_dims=(64, 128), dtypes=(torch.bfloat16,), masks="none",
...              causal="only", max_seq=4096)
>>> c.ranges("sdpa")["t"]
(1, 4096)
>>> Contract(causal="only", masks="bool")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: Contract: causal='only' contradicts masks='bool': PyTorch's attention takes ...

Every field has a default that means "as PyTorch": a field left at its default constrains
nothing; a field set to something else that the checked op does not have (``head_dims`` for a
cross-entropy, ``params_only`` for attention) is a `ValueError` at check time.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from refllm.ops.optim_adam import ADAM_EPS  # one list: where Adam's eps goes
from refllm.testing.engine.sizes import DEFAULT_BUDGET, LONG_LENGTHS

__all__ = ["Contract", "OPS", "AXES"]

LAYOUTS = ("bhtd", "bthd")
MASKS = ("any", "bool", "additive", "none")
CAUSAL = ("optional", "only", "never")
FULLY_MASKED_ROWS = ("zeros", "nan", "avoid")
CAUSAL_ALIGNMENTS = ("top_left", "bottom_right")
GQA_HEADS = ("grouped", "tiled")

class _FromRecords(Mapping[str, Any]):
    """A read-only view of one fact of every op record that takes a contract (its
    ``record.contract`` fields are not empty), read when looked up: an op added to the registry
    at run time is in it."""

    def __init__(self, fact: Callable[[Any], Any]):
        self._fact = fact

    def _records(self) -> dict[str, Any]:
        from refllm.testing.registry import RECORDS

        return {name: r for name, r in RECORDS.items() if r.contract}

    def __getitem__(self, op: str) -> Any:
        return self._fact(self._records()[op])

    def __iter__(self) -> Iterator[str]:
        return iter(self._records())

    def __len__(self) -> int:
        return len(self._records())


AXES: Mapping[str, tuple[str, ...]] = _FromRecords(lambda r: tuple(r.axes))
"""The axes whose ranges ``sizes`` may give, per op (each op record's ``axes``)."""

OPS: Mapping[str, frozenset[str]] = _FromRecords(lambda r: frozenset(r.contract))
"""The fields that apply to each op (each op record's ``contract``); any other field must stay
at its default."""


@dataclasses.dataclass(frozen=True)
class Contract:
    """What a kernel supports; a check draws only inputs inside it (module docs).

    Fields (each default constrains nothing):
        layout: attention inputs' layout: None (any rank, PyTorch's), "bhtd" (exactly
            (b, h, t, d)) or "bthd" (exactly (b, t, h, d), FlashAttention's; the check moves the
            head axis for the reference, and masks stay (b, h, t, s)-broadcastable).
        head_dims: the allowed head widths d (and value widths e = d), e.g. (64, 128).
        dtypes: the dtypes the check may run at; another ``dtype=`` is a ValueError.
        masks: "any" (boolean and additive ``attn_mask``), "bool", "additive" or "none" (no
            ``attn_mask``; for multi-head attention no ``key_padding_mask`` either).
        causal: "optional" (drawn sometimes), "only" (every example ``is_causal=True``) or "never".
        gqa: grouped-query inputs (``enable_gqa``) may be drawn.
        scale: an explicit ``scale=`` may be drawn.
        max_seq: the longest t and s (caps ``sizes["t"]``, ``sizes["s"]`` and the long tier).
        sizes: inclusive per-axis ranges, e.g. ``{"b": (1, 2), "h": (1, 4), "t": (1, 4096)}``
            (axes per op in `AXES`); an axis it names is drawn inside its range, short most of
            the time and at boundary lengths in the kernel-sized tier.
        long_axes: draw the kernel-sized tier (one long axis in about one example in six).
        budget: the most elements of any one tensor of an example (default 2^20); it must hold
            the smallest input the other fields allow.
        fully_masked_rows: what the kernel gives for a query that sees no key: "zeros" (PyTorch
            2.13, refllm), "nan" (a plain softmax: 0/0; such rows must then be NaN, the other rows
            are judged as usual, and gradients are judged with those rows' outputs held at zero)
            or "avoid" (never drawn). None: the check's default (attention: "zeros"; multi-head
            attention: "avoid", see its docs).
        causal_alignment: (attention) where ``is_causal`` puts the diagonal when t != s:
            "top_left" (PyTorch: query i sees keys j <= i) or "bottom_right" (j <= i + s - t: the
            last query sees every key, as FlashAttention and a KV cache align it; queries with no
            key then give zeros).
        gqa_heads: (attention, ``enable_gqa``) which key/value head query head i reads:
            "grouped" (PyTorch: head i // r, ``repeat_interleave``) or "tiled" (head i % g,
            ``repeat``), with r = h / g query heads per key/value head.
        unsupported: exception types with which the kernel refuses an input; such examples are
            reported as "unsupported", never as a pass or as a wrong answer.
        params_only: (optimizers) compare the parameters only, not the optimizer state (for
            optimizers that keep other state names than torch.optim's).
        none_grads: (optimizers) draw parameters whose ``.grad`` is None.
        adam_eps: (optimizers like Adam and AdamW) where ε enters the denominator:
            "after_correction" (PyTorch: sqrt(v_t) / sqrt(1 - beta2^t) + eps), "before_correction"
            (Kingma & Ba §2, Keras: sqrt(v_t) + eps, the bias correction in the step size) or
            "floor" (max(sqrt(v_t) / sqrt(1 - beta2^t), eps), heavyball); the reference and its
            error bound follow it.
    """

    layout: str | None = None
    head_dims: tuple[int, ...] | None = None
    dtypes: tuple[torch.dtype, ...] | None = None
    masks: str = "any"
    causal: str = "optional"
    gqa: bool = True
    scale: bool = True
    max_seq: int | None = None
    sizes: Mapping[str, tuple[int, int]] = dataclasses.field(  # (not hashed: a mapping)
        default_factory=lambda: types.MappingProxyType({}), hash=False)
    long_axes: bool = True
    budget: int = DEFAULT_BUDGET
    fully_masked_rows: str | None = None
    causal_alignment: str = "top_left"
    gqa_heads: str = "grouped"
    unsupported: tuple[type[BaseException], ...] = (NotImplementedError,)
    params_only: bool = False
    none_grads: bool = True
    adam_eps: str = "after_correction"

    def __post_init__(self) -> None:
        _one_of("layout", self.layout, (None, *LAYOUTS))
        _one_of("masks", self.masks, MASKS)
        _one_of("causal", self.causal, CAUSAL)
        _one_of("fully_masked_rows", self.fully_masked_rows, (None, *FULLY_MASKED_ROWS))
        _one_of("causal_alignment", self.causal_alignment, CAUSAL_ALIGNMENTS)
        _one_of("gqa_heads", self.gqa_heads, GQA_HEADS)
        _one_of("adam_eps", self.adam_eps, ADAM_EPS)
        for name in ("gqa", "scale", "long_axes", "params_only", "none_grads"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Contract: {name} must be a bool, got "
                                f"{getattr(self, name)!r}")
        if self.head_dims is not None:
            dims = tuple(sorted(set(_ints("head_dims", self.head_dims))))
            if not dims:
                raise ValueError("Contract: head_dims must name at least one head width, got "
                                 f"{self.head_dims!r} (None allows any)")
            object.__setattr__(self, "head_dims", dims)
        if self.dtypes is not None:
            dtypes = tuple(self.dtypes) if not isinstance(self.dtypes, torch.dtype) else (
                self.dtypes,)
            if not dtypes or not all(isinstance(d, torch.dtype) and d.is_floating_point
                                     for d in dtypes):
                raise ValueError("Contract: dtypes must be a non-empty tuple of floating-point "
                                 f"torch dtypes, got {self.dtypes!r}")
            object.__setattr__(self, "dtypes", dtypes)
        unsupported = self.unsupported
        if isinstance(unsupported, type):
            unsupported = (unsupported,)
        unsupported = tuple(unsupported)
        if not all(isinstance(e, type) and issubclass(e, BaseException) for e in unsupported):
            raise TypeError("Contract: unsupported must be a tuple of exception classes, got "
                            f"{self.unsupported!r}")
        object.__setattr__(self, "unsupported", unsupported)
        if self.max_seq is not None:
            _ints("max_seq", (self.max_seq,))
            if self.max_seq < 1:
                raise ValueError(f"Contract: max_seq must be >= 1, got {self.max_seq!r}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, int):
            raise TypeError(f"Contract: budget must be an int (elements), got {self.budget!r}")
        known = sorted({a for axes in AXES.values() for a in axes})
        sizes: dict[str, tuple[int, int]] = {}
        for name, bounds in dict(self.sizes).items():
            if name not in known:
                raise ValueError(f"Contract: unknown axis {name!r} in sizes; choose from {known}")
            lo, hi = _pair(name, bounds)
            sizes[name] = (lo, hi)
        object.__setattr__(self, "sizes", types.MappingProxyType(sizes))
        self._check_consistent()

    def _check_consistent(self) -> None:
        if self.causal == "only" and self.masks in ("bool", "additive"):
            raise ValueError(f"Contract: causal='only' contradicts masks={self.masks!r}: "
                             "PyTorch's attention takes attn_mask or is_causal, never both (use "
                             "masks='none')")
        if self.causal == "only" and self.fully_masked_rows == "nan":
            raise ValueError("Contract: causal='only' and fully_masked_rows='nan' contradict: "
                             "a causal mask (top-left, t <= s) leaves no query without a key")
        for axis in ("t", "s"):
            if self.max_seq is not None and axis in self.sizes and \
                    self.sizes[axis][0] > self.max_seq:
                raise ValueError(f"Contract: sizes[{axis!r}] = {self.sizes[axis]} starts beyond "
                                 f"max_seq = {self.max_seq}")
        for axis in ("d", "e"):
            if self.head_dims is not None and axis in self.sizes:
                lo, hi = self.sizes[axis]
                if not any(lo <= n <= hi for n in self.head_dims):
                    raise ValueError(f"Contract: head_dims {self.head_dims} lie outside "
                                     f"sizes[{axis!r}] = {(lo, hi)}")
        smallest = self.smallest_elements()
        if self.budget < smallest:
            raise ValueError(f"Contract: budget = {self.budget} elements is below the smallest "
                             f"input the contract allows ({smallest} elements in one tensor)")

    def smallest_elements(self) -> int:
        """Elements of the largest tensor of the smallest input the contract allows, over every
        op whose axes it names (attention: the (b, h, t, s) scores and (b, h, t, d) query)."""
        lo = {a: r[0] for a, r in self.sizes.items()}
        d = min(self.head_dims) if self.head_dims else lo.get("d", 1)
        b, h, t, s = (lo.get(a, 1) for a in ("b", "h", "t", "s"))
        return max(b * h * t * max(s, d), b * h * s * max(d, lo.get("e", 1)),
                   lo.get("rows", 1) * lo.get("classes", 1), lo.get("numel", 1))

    def is_default(self, name: str) -> bool:
        """Whether field ``name`` holds its default (so constrains nothing)."""
        field = next(f for f in dataclasses.fields(self) if f.name == name)
        value = getattr(self, name)
        if name == "sizes":
            return not value
        return bool(value == field.default)

    def for_op(self, op: str) -> Contract:
        """``self`` after checking that every field it sets applies to ``op``; ValueError
        naming the fields that do not (and the axes of ``sizes`` the op does not have)."""
        if op not in OPS:
            raise ValueError(f"no contract fields for op {op!r}; ops: {sorted(OPS)}")
        extra = [f.name for f in dataclasses.fields(self)
                 if f.name not in OPS[op] and not self.is_default(f.name)]
        if extra:
            raise ValueError(f"Contract fields {extra} do not apply to {op}; it takes "
                             f"{sorted(OPS[op])}")
        axes = [a for a in self.sizes if a not in AXES[op]]
        if axes:
            raise ValueError(f"Contract sizes name axes {axes} that {op} does not have; its "
                             f"axes: {list(AXES[op])}")
        return self

    def check_dtype(self, dtype: torch.dtype) -> None:
        """ValueError when the contract lists dtypes and ``dtype`` is not one of them."""
        if self.dtypes is not None and dtype not in self.dtypes:
            raise ValueError(f"dtype {dtype} is outside the contract's dtypes {self.dtypes}")

    def ranges(self, op: str) -> dict[str, tuple[int, int]]:
        """The per-axis ranges of ``op``'s strategy: ``sizes`` with ``max_seq`` on t and s."""
        out = {a: r for a, r in self.sizes.items() if a in AXES.get(op, ())}
        if self.max_seq is not None and op in ("sdpa", "multihead"):
            for a in ("t", "s"):
                lo, hi = out.get(a, (1, LONG_LENGTHS[-1]))
                out[a] = (lo, min(hi, self.max_seq))
        return out

    def snippet(self) -> str:
        """Python source of the non-default fields, ``Contract(...)``."""
        parts = [f"{f.name}={_source(getattr(self, f.name))}" for f in dataclasses.fields(self)
                 if not self.is_default(f.name)]
        return f"Contract({', '.join(parts)})"


def _source(value: Any) -> str:
    if isinstance(value, Mapping):
        return repr(dict(value))
    if isinstance(value, tuple) and value and isinstance(value[0], type):
        inner = ", ".join(v.__qualname__ for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Contract: {name} must be one of {list(allowed)}, got {value!r}")


def _ints(name: str, values: Any) -> list[int]:
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"Contract: {name} must be a collection of ints, got {values!r}") \
            from None
    for n in values:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"Contract: {name} must hold ints, got {n!r}")
        if n < 1:
            raise ValueError(f"Contract: {name} must be positive, got {n!r}")
    return values


def _pair(name: str, bounds: Any) -> tuple[int, int]:
    try:
        lo, hi = bounds
    except (TypeError, ValueError):
        raise ValueError(f"Contract: sizes[{name!r}] must be a (low, high) pair, "
                         f"got {bounds!r}") from None
    _ints(f"sizes[{name!r}]", (lo, hi))
    if lo > hi:
        raise ValueError(f"Contract: sizes[{name!r}] = {bounds!r} has low > high")
    return lo, hi


def apply(contract: Contract | None, op: str, dtype: torch.dtype) -> Contract:
    """The contract a check runs under: ``Contract()`` for None, else validated for ``op`` and
    ``dtype`` (ValueError/TypeError otherwise)."""
    if contract is None:
        return Contract()
    if not isinstance(contract, Contract):
        raise TypeError(f"contract must be a refllm.testing.contract.Contract, got "
                        f"{type(contract).__name__}")
    contract.for_op(op).check_dtype(dtype)
    return contract

