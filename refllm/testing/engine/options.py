"""The options of a check, as the CLI and the pytest plugin take them: one object, validated once.

`CheckOptions` holds what every check takes (dtype, device, examples, seed, threads, a timeout, a
kernel contract) and the op's own choices by keyword (``features``, ``reductions``, ``like``: see
the op's record in :mod:`refllm.testing.registry`). `CheckOptions.kwargs` validates them against a
record and returns the keyword arguments of its check; every bad value is a `ValueError` that names
the option, what was given and what is allowed, raised before anything is drawn. ``refllm check``
turns it into exit status 2, the plugin into a pytest usage error.

This module imports neither pytest nor torch at import time: ``refllm check`` runs on a plain
install.

>>> parse_dtype("bf16")
torch.bfloat16
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from refllm.testing.registry import OpRecord

DTYPES = {
    "float64": "float64", "fp64": "float64", "f64": "float64", "double": "float64",
    "float32": "float32", "fp32": "float32", "f32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "f16": "float16", "half": "float16",
}
"""The dtype names the CLI and the plugin accept (case-insensitive, ``torch.`` prefix allowed)."""


def parse_dtype(name: Any) -> torch.dtype:
    """``torch.<dtype>`` for a name such as ``"bf16"`` or ``"float32"`` (any of `DTYPES`, any
    case, ``torch.`` prefix allowed) or one of those dtypes; `ValueError` listing what
    is accepted for anything else (an unknown name, an integer or complex dtype)."""
    import torch

    accepted = {getattr(torch, full) for full in DTYPES.values()}
    if isinstance(name, torch.dtype):
        if name in accepted:
            return name
    elif isinstance(name, str):
        key = name.strip().lower().removeprefix("torch.")
        if key in DTYPES:
            return getattr(torch, DTYPES[key])
    raise ValueError(f"unknown dtype {name!r}; choose from {sorted(set(DTYPES))} or one of "
                     f"{sorted(str(d) for d in accepted)}")


def check_device(device: Any) -> str:
    """``device`` as a string, once it is known to be usable here; `ValueError` otherwise.

    A device that does not parse (``"gpu"``), or whose backend is not available on this machine
    (``"cuda"`` without CUDA, ``"cuda:3"`` with two GPUs), is refused before a check starts: it
    would otherwise fail on the first tensor moved there, deep inside the check.
    """
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device; write cpu, cuda, cuda:1, "
                         "mps, ...") from None
    kind = parsed.type
    if kind in ("cpu", "meta"):
        if kind == "meta":
            raise ValueError(f"device {device!r} holds no values to compare; use cpu or an "
                             "accelerator")
        return str(device)
    backend = getattr(torch, kind, None) if kind != "mps" else torch.backends.mps
    available = getattr(backend, "is_available", None)
    if available is None or not available():
        raise ValueError(f"device {device!r} is not available on this machine "
                         f"(torch.{'backends.' if kind == 'mps' else ''}{kind}.is_available() "
                         "is False)")
    count = getattr(backend, "device_count", None)
    if parsed.index is not None and count is not None and parsed.index >= count():
        raise ValueError(f"device {device!r} does not exist: this machine has {count()} "
                         f"{kind} device(s)")
    return str(device)


def features_of(features: Iterable[str] | None, known: tuple[str, ...],
                op: str) -> tuple[str, ...]:
    """Validate a feature selection; ``None`` means all of ``known``."""
    if features is None:
        return known
    chosen = tuple(features)
    unknown = [f for f in chosen if f not in known]
    if unknown:
        hint = (" (dropout cannot be compared: see the module docs)"
                if "dropout" in unknown else "")
        raise ValueError(f"unknown {op} features {unknown}{hint}; choose from {list(known)}")
    return chosen


def split_names(text: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """``"a, b"`` -> ``("a", "b")``; a sequence as a tuple; None stays None."""
    if text is None:
        return None
    parts = text.split(",") if isinstance(text, str) else list(text)
    return tuple(p.strip() for p in parts if str(p).strip())


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """What a check is run with, before validation (names as typed on a command line).

    ``dtype`` is a name (``"bf16"``) or a ``torch.dtype``, None for the check's own default;
    ``examples`` None for the default count (`refllm.testing.engine.settings.default_examples`);
    ``threads`` None leaves the caller's thread count alone; ``timeout`` the seconds one call
    of the target may take (None: the checks' default, 60; 0: no timeout); ``contract`` is a
    `refllm.testing.contract.Contract` or the ``"module:name"`` of one (None: PyTorch's whole
    contract); ``choices`` maps an op option's keyword (``"features"``, ``"reductions"``,
    ``"like"``) to the names chosen, None or absent for the check's default.
    """

    dtype: Any = None
    device: str = "cpu"
    examples: int | None = None
    seed: int | None = None
    threads: int | None = 1
    timeout: float | None = None
    contract: Any = None
    choices: Mapping[str, str | tuple[str, ...] | None] = dataclasses.field(default_factory=dict)

    def kwargs(self, record: OpRecord, *, flag: str = "--{}",
               choice_flag: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``record``'s check; `ValueError` naming the bad option.

        ``flag`` spells an option in messages (``"--{}"`` for the CLI, ``"--refllm-{}"`` for the
        plugin), ``choice_flag`` an op's own option (default: as ``flag``).
        """
        from refllm._validation import require_int, require_real

        out: dict[str, Any] = {}
        try:
            if self.dtype is not None:
                out["dtype"] = parse_dtype(self.dtype)
        except ValueError as exc:
            raise ValueError(f"{flag.format('dtype')}: {exc}") from None
        try:
            out["device"] = check_device(self.device)
        except ValueError as exc:
            raise ValueError(f"{flag.format('device')}: {exc}") from None
        for name, value, low in (("examples", self.examples, 1), ("seed", self.seed, None),
                                 ("threads", self.threads, 1)):
            if value is not None:
                try:
                    require_int(name, value, low=low)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{flag.format(name)}: {exc}") from None
        out.update(examples=self.examples, seed=self.seed, threads=self.threads)
        if self.timeout is not None:  # None: the check's default
            try:
                out["timeout"] = require_real("timeout", self.timeout, low=0.0) or None
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{flag.format('timeout')}: {exc} (seconds; 0: no timeout)"
                                 ) from None
        out.update(record.choice_kwargs(self.choices, flag=choice_flag or flag))
        if self.contract is not None:
            where = (choice_flag or flag).format("contract")
            out["contract"] = _contract(self.contract, record, out.get("dtype"), where)
        return out


def _contract(contract: Any, record: OpRecord, dtype: Any, flag: str) -> Any:
    """The `Contract` named by ``contract`` (an object or ``"module:name"``), checked against the
    op and the dtype; `ValueError` naming ``flag`` otherwise."""
    import inspect

    from refllm.testing.contract import Contract, apply
    from refllm.testing.engine.targets import load as load_users
    from refllm.testing.registry import load

    name = contract if isinstance(contract, str) else None
    try:
        if name is not None:  # as a target: the current folder searched, an exit refused
            contract = load_users(name, callable_only=False, what="contract")
        if not isinstance(contract, Contract):
            raise ValueError(f"{name or 'it'} is a {type(contract).__name__}, not a "
                             "refllm.testing.contract.Contract")
        if dtype is None:
            dtype = inspect.signature(load(record.check)).parameters["dtype"].default
        return apply(contract, record.name, dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{flag}: {exc}") from None
