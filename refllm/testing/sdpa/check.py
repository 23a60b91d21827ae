"""`check_sdpa`: any function with the signature of ``F.scaled_dot_product_attention``.

    out = softmax(q k^T * scale + mask) v        (Vaswani et al. 2017, §3.2.1, Eq. 1)

The function is called exactly as PyTorch's op is: ``fn(query, key, value, **kwargs)`` with
non-default keywords among ``attn_mask``, ``is_causal``, ``scale`` and ``enable_gqa``; it is
compared with :func:`refllm.ops.attention.scaled_dot_product_attention` run in float64, forward and
backward (gradients wrt query, key and value under a random upstream gradient).

Deviation: dropout is not checked. A dropped-out result depends on the random keep-mask, which a
user's kernel draws its own way; refllm's ``generator=`` keyword is not part of PyTorch's
signature. Check your kernel with ``dropout_p=0`` (the default here).

The default calls ``sdpa(q, k, v)`` and ``sdpa(q, k, v, is_causal=True)`` (t == s) are judged
first on fixed inputs (`refllm.testing.sdpa.strategy.sdpa_default_calls`), then drawn in
about one example in five (docs/oracle.md, "The default call").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from hypothesis import strategies as st

from refllm.testing.contract import Contract
from refllm.testing.engine.case import Case
from refllm.testing.engine.check import CheckContext, check
from refllm.testing.engine.function import ConventionBroken
from refllm.testing.engine.report import Report
from refllm.testing.engine.tolerances import LOW_PRECISION_NOISE_FACTOR
from refllm.testing.sdpa.error_bounds import sdpa_error_bounds
from refllm.testing.sdpa.record import RECORD

SDPA_FEATURES = ("masks", "causal", "gqa", "scale", "large_logits", "non_contiguous",
                 "fully_masked_rows", "batch_dims")
"""What `check_sdpa` exercises by default (all of them): boolean and additive ``attn_mask``
("masks"), ``is_causal`` ("causal"), grouped-query ``enable_gqa`` ("gqa"), an explicit ``scale``,
logits up to about 1e4 ("large_logits"), transposed-in-memory inputs ("non_contiguous"), queries
that see no key ("fully_masked_rows"), leading batch dimensions ("batch_dims")."""


def sdpa_floors(case: Case, out: torch.Tensor, g: torch.Tensor | None,
                dtype: torch.dtype) -> dict[str, float]:
    """Rounding noise of the attention backward that no same-dtype reference shows.

    Fused kernels (FlashAttention, PyTorch's) compute ``dS = P * (dP - D)`` with
    ``D = rowsum(dO * O)`` taken from the *rounded* output O (FlashAttention-2, Dao 2023, §3.1.2,
    Algorithm 2), where the plain math uses ``rowsum(P * dP)``. Where a softmax row is one-hot
    (large logits) the exact dS is 0 but theirs is ``eps * |D|``, which reaches dq and dk scaled by
    ``scale * |k| * s`` and ``scale * |q| * t``. Those are the floors returned (times
    ``LOW_PRECISION_NOISE_FACTOR``).
    """
    if g is None:
        return {}
    q, k = case.args[0].detach(), case.args[1].detach()
    scale = case.kwargs.get("scale") or q.shape[-1] ** -0.5
    d_max = float((g * out.detach()).sum(-1).abs().max()) if out.numel() else 0.0
    eps = torch.finfo(dtype).eps * LOW_PRECISION_NOISE_FACTOR * abs(scale) * d_max
    t, s = q.shape[-2], k.shape[-2]
    return {"grad wrt query": eps * _amax(k) * s, "grad wrt key": eps * _amax(q) * t}


def _amax(x: torch.Tensor) -> float:
    return float(x.abs().max()) if x.numel() else 0.0


def check_sdpa(fn: Callable[..., Any] | str, *, features: Iterable[str] | None = None,
               **options: Any) -> Report:
    """Check ``fn`` (or ``"module:name"``) against refllm's scaled dot-product attention.

    Every check takes these options (`refllm.testing.engine.options.CheckOptions`, declared
    once for Python, ``refllm check`` and the pytest plugin):

        dtype, device: what the inputs are cast to before ``fn`` sees them; ``dtype`` is a
            ``torch.dtype`` or a name as ``refllm check --dtype`` takes it (``"bf16"``,
            ``"float32"``, ...: `refllm.testing.engine.options.parse_dtype`).
        examples: how many examples Hypothesis draws (default 40, `DEFAULT_EXAMPLES` of
            :mod:`refllm.testing.engine.settings`, or the active refllm profile's count).
        grads: also compare the gradients wrt query, key and value.
        seed: fix the drawn examples (the same examples in any program, any thread count).
        max_size: the largest drawn size of each short axis (h, t, s, d, e).
        naive: also cross-check refllm's fast reference against its naive one on small cases.
        raise_on_failure: raise `refllm.testing.OracleFailure` (an AssertionError holding the
            report) on a disagreement, instead of returning the failed report.
        threads: intra-op threads the reference and ``fn`` run at during the check, restored
            after (default 1, the fastest on these small examples; None: leave the caller's).
        timeout: seconds one call of ``fn`` may take (default 60, `DEFAULT_TIMEOUT`; None or 0:
            no limit); a call that outlives it fails the example as "finishes in time" (see
            `refllm.testing.engine.calls.deadline` for what can be interrupted).
        contract: a `refllm.testing.contract.Contract`: draw only inputs the kernel supports
            (layout, head dims, masks, causal, sizes, ...) and report what it refuses with one
            of ``contract.unsupported`` as unsupported; it narrows ``features`` further.

    and its own: ``features``, which of :data:`SDPA_FEATURES` to exercise (default: all).
    """
    return check(RECORD, fn, features=features, **options)


def cases(ctx: CheckContext) -> st.SearchStrategy[Case]:
    from refllm.testing.sdpa.strategy import sdpa_cases

    return sdpa_cases(dtype=torch.float64, max_size=ctx.max_size, dropout=False,
                      **sdpa_options(ctx.contract, ctx.features))


def calls(ctx: CheckContext) -> list[Case]:
    from refllm.testing.sdpa.strategy import sdpa_default_calls

    c = ctx.contract
    options = sdpa_options(c, ctx.features)
    return sdpa_default_calls(
        max_batch_dims=options["max_batch_dims"], max_size=ctx.max_size,
        sizes=options["sizes"], head_dims=c.head_dims, layout=c.layout,
        causal=options["causal"] if options["causal"] else "never",
        long=c.long_axes, budget=c.budget)


_OPTION = {"batch_dims": "max_batch_dims"}  # a feature's keyword of `sdpa_cases`


def adapt(ctx: CheckContext, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec under a contract's layout ("bthd": the head axes moved for the reference, its
    naive twin, the floors and the bounds) and conventions (``fully_masked_rows="nan"``,
    ``causal_alignment``, ``gqa_heads``: the reference follows them)."""
    c = ctx.contract
    options = sdpa_options(c, ctx.features)
    spec["features"] = tuple(f for f in ctx.features if options.get(_OPTION.get(f, f), True))
    if c.fully_masked_rows == "nan":
        spec["fn"] = _nan_rows_held_at_zero(spec["fn"])
    conventions = {f: getattr(c, f) for f in ("layout", "causal_alignment", "gqa_heads")
                   if not c.is_default(f)}
    if not conventions:
        return spec
    from refllm.ops import attention

    spec.update(reference=contract_reference(c), reference_source=(
        "from refllm.testing.contract import Contract\n"
        "from refllm.testing.sdpa.check import contract_reference\n\n"
        f"reference = contract_reference({Contract(**conventions).snippet()})"))
    if spec["naive"]:
        spec["naive"] = contract_reference(c, attention.scaled_dot_product_attention_naive)
    if c.layout == "bthd":
        spec.update(floors=_floors_from_bthd, error_bounds=_bounds_from_bthd)
    if not c.is_default("causal_alignment") or not c.is_default("gqa_heads"):
        # the bounds' model reads PyTorch's conventions: where the contract's differ on a case,
        # the policy's same-dtype rule alone decides, on the reference that follows the
        # contract's; where they agree (no causal t != s, no grouped heads) the bounds hold
        spec["error_bounds"] = _bounds_where_conventions_agree(c, spec["error_bounds"])
    return spec


def _bounds_where_conventions_agree(c: Contract, bounds: Callable[..., Any] | None
                                    ) -> Callable[..., Any] | None:
    """``bounds`` on the cases where PyTorch's conventions and contract ``c``'s give the same
    result, none elsewhere."""
    if bounds is None:
        return None
    t_axis, h_axis = (-3, -2) if c.layout == "bthd" else (-2, -3)

    def where_they_agree(case: Case, g: torch.Tensor | None,
                         dtype: torch.dtype) -> dict[str, torch.Tensor]:
        q, k = case.args[0], case.args[1]
        shifted = (c.causal_alignment != "top_left" and case.kwargs.get("is_causal")
                   and q.shape[t_axis] != k.shape[t_axis])
        regrouped = (c.gqa_heads != "grouped" and case.kwargs.get("enable_gqa")
                     and q.dim() >= 3 and q.shape[h_axis] != k.shape[h_axis])
        return {} if shifted or regrouped else bounds(case, g, dtype)

    return where_they_agree


def contract_reference(contract: Contract,
                       fn: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """refllm's attention (or ``fn``, taking ``causal_alignment=``) under ``contract``'s
    layout, causal alignment and GQA head order: what the contract says the kernel computes.

    >>> ref = contract_reference(Contract(causal_alignment="bottom_right"))
    >>> q, k = torch.ones(1, 1, 1, 2), torch.ones(1, 1, 3, 2)
    >>> v = torch.arange(3.0).reshape(1, 1, 3, 1)
    >>> ref(q, k, v, is_causal=True).item()  # the one query sees all three keys: their mean
    1.0
    """
    from refllm.ops.attention import scaled_dot_product_attention

    inner = fn or scaled_dot_product_attention
    alignment, tiled = contract.causal_alignment, contract.gqa_heads == "tiled"

    def reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  **kwargs: Any) -> torch.Tensor:
        if tiled and kwargs.get("enable_gqa") and query.dim() >= 3 and key.dim() >= 3:
            r = query.shape[-3] // key.shape[-3]  # head i reads key/value head i % g
            key, value = torch.cat([key] * r, dim=-3), torch.cat([value] * r, dim=-3)
            kwargs = {**kwargs, "enable_gqa": False}
        return inner(query, key, value, causal_alignment=alignment, **kwargs)

    reference.__name__ = "contract_reference"
    return _from_bthd(reference) if contract.layout == "bthd" else reference


def bthd_reference(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   **kwargs: Any) -> torch.Tensor:
    """refllm's attention on (b, t, h, d) inputs (a contract's layout "bthd"): the head axis
    moved before the call and the (b, h, t, e) output's moved back; masks as they come."""
    return contract_reference(Contract(layout="bthd"))(query, key, value, **kwargs)


def sdpa_options(c: Contract, chosen: tuple[str, ...]) -> dict[str, Any]:
    """Keyword arguments of `sdpa_cases` for the features ``chosen`` inside contract ``c``."""
    masks: bool | str = False
    if "masks" in chosen and c.causal != "only":
        masks = True if c.masks == "any" else False if c.masks == "none" else c.masks
    causal: bool | str = "only" if c.causal == "only" else (
        "causal" in chosen and c.causal == "optional")
    return dict(
        max_batch_dims=2 if "batch_dims" in chosen else 0, masks=masks, causal=causal,
        gqa="gqa" in chosen and c.gqa, scale="scale" in chosen and c.scale,
        large_logits="large_logits" in chosen, non_contiguous="non_contiguous" in chosen,
        fully_masked_rows="fully_masked_rows" in chosen and c.fully_masked_rows != "avoid",
        long_axes=c.long_axes, budget=c.budget, sizes=c.ranges("sdpa"), head_dims=c.head_dims,
        layout=c.layout)


def valid_bounds(case: Case, g: torch.Tensor | None,
                  dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """`sdpa_error_bounds` where its first-order model holds, else none (the policy's
    same-dtype rule then decides alone, which is stricter, never looser).

    Higham's gamma_n = n u / (1 - n u) is a bound only while n u < 1: in bfloat16 (u = 2^-8)
    a sum over 256 or more keys or queries has no such bound (gamma divides by zero at n = 256
    and turns negative beyond), which kernel-sized inputs reach."""
    q, k, v = case.args[:3]
    t, s, d, e = q.shape[-2], k.shape[-2], q.shape[-1], v.shape[-1]
    r = q.shape[-3] // k.shape[-3] if case.kwargs.get("enable_gqa") and q.dim() >= 3 else 1
    if max(d + 2, s + 4, t * r + 1, e) * torch.finfo(dtype).eps / 2 >= 1:
        return {}
    return sdpa_error_bounds(case, g, dtype)


def _to_bhtd(x: Any) -> Any:
    return x.transpose(-3, -2) if isinstance(x, torch.Tensor) and x.dim() == 4 else x


def _from_bthd(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (taking (b, h, t, d) tensors) called on (b, t, h, d) tensors: the head axis moved
    before the call and the output's moved back; masks stay (b, h, t, s) as they come."""

    def call(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs: Any) -> Any:
        return fn(_to_bhtd(query), _to_bhtd(key), _to_bhtd(value), **kwargs).transpose(-3, -2)

    call.__name__ = getattr(fn, "__name__", "reference")
    return call


def _bhtd_case(case: Case) -> Case:
    return Case(tuple(_to_bhtd(x) for x in case.args), case.kwargs, case.note)


def _bounds_from_bthd(case: Case, g: torch.Tensor | None,
                      dtype: torch.dtype) -> dict[str, torch.Tensor]:
    bounds = valid_bounds(_bhtd_case(case), _to_bhtd(g), dtype)
    return {k: v.transpose(-3, -2) for k, v in bounds.items()}


def _floors_from_bthd(case: Case, out: torch.Tensor, g: torch.Tensor | None,
                      dtype: torch.dtype) -> dict[str, float]:
    return sdpa_floors(_bhtd_case(case), _to_bhtd(out), _to_bhtd(g), dtype)


def _dead_rows(mask: torch.Tensor) -> torch.Tensor:
    """(..., t, 1): True where a query sees no key under ``attn_mask``."""
    keep = mask if mask.dtype == torch.bool else mask != float("-inf")
    return ~keep.any(-1, keepdim=True)


def _nan_rows_held_at_zero(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The convention ``fully_masked_rows="nan"`` (a plain softmax's 0/0), judged on refllm's.

    Where a query sees no key, ``fn``'s output must be NaN (checked on a call without autograd;
    anything else raises, reported as such); ``fn`` is then called with those rows' keys let in,
    and the output of those rows is replaced by zeros, so that the other rows, and the gradients
    (to which those rows then add nothing, as in refllm's convention), are judged as usual.
    """

    def call(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs: Any) -> Any:
        mask = kwargs.get("attn_mask")
        if mask is None or not bool(_dead_rows(mask).any()):
            return fn(query, key, value, **kwargs)
        dead = _dead_rows(mask)
        with torch.no_grad():
            raw = fn(query.detach(), key.detach(), value.detach(), **kwargs)
        rows = dead.expand(*torch.broadcast_shapes(dead.shape, raw.shape[:-1] + (1,)))
        if rows.shape[:-1] != raw.shape[:-1] or not bool(raw[rows.squeeze(-1)].isnan().all()):
            raise ConventionBroken("contract fully_masked_rows='nan': the output of a query "
                                   "that sees no key is not NaN")
        opened = mask | dead if mask.dtype == torch.bool else mask.masked_fill(dead, 0.0)
        out = fn(query, key, value, **{**kwargs, "attn_mask": opened})
        return out.masked_fill(rows, 0.0)

    call.__name__ = getattr(fn, "__name__", "fn")
    return call
