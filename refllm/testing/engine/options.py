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


def _option(default: Any, help: str, *, flag: type | None = None, repeat: bool = False) -> Any:
    """A `CheckOptions` field; ``flag``: the type the command line and the plugin parse it with
    (None: the option is Python's only); ``repeat``: an option given once per value
    (``--set a=1 --set b=2``), a tuple of them."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag,
                                                        "repeat": repeat})


@dataclasses.dataclass(frozen=True)
class CheckOptions:
    """The options every check takes, declared once for Python, ``refllm check`` and the plugin.

    The fields' defaults are the checks' defaults: ``dtype`` (a name such as ``"bf16"`` or a
    ``torch.dtype``), ``device``, ``examples`` (None: `refllm.testing.engine.settings.
    default_examples`), ``seed`` (None: the active profile decides), ``threads`` (None: the
    caller's thread count), ``timeout`` (seconds one call of the target may take; None or 0:
    none), ``contract`` (a `refllm.testing.contract.Contract` or the ``"module:name"`` of one;
    None: PyTorch's whole contract), ``set`` (``NAME=VALUE`` texts: hyper-parameters held fixed,
    for the ops whose record names them, the optimizers: :mod:`refllm.testing.engine.hyper`),
    ``grads``, ``naive``, ``max_size`` and ``raise_on_failure``.
    ``choices`` maps an op option's keyword (``"features"``, ``"reductions"``, ``"like"``) to
    the names chosen (a ``"a,b"`` string or a tuple), None or absent for the check's default.

    The command line (``--dtype``, ...) and the plugin (``--refllm-dtype``, ...) offer the fields
    whose metadata names a ``flag`` type (`flags`), with these defaults and help texts.
    """

    dtype: Any = _option("float32", "dtype of the checked inputs: float64, float32, bf16, fp16",
                         flag=str)
    device: str = _option("cpu", "device of the checked inputs (cpu, cuda, cuda:1, ...)",
                          flag=str)
    examples: int | None = _option(None, "examples to draw (default 40, refllm.testing.engine"
                                         ".settings.DEFAULT_EXAMPLES, or the active refllm "
                                         "profile's)", flag=int)
    seed: int | None = _option(None, "seed of the search: fixes the drawn examples", flag=int)
    threads: int | None = _option(1, "intra-op threads during the check (default 1: the "
                                     "fastest on its small examples; the caller's setting is "
                                     "restored after)", flag=int)
    timeout: float | None = _option(60.0, "seconds one call of the target may take before the "
                                          "example fails as timed out (0: no timeout)",
                                    flag=float)
    contract: Any = _option(None, "module:name of a refllm.testing.contract.Contract (what the "
                                  "target supports)", flag=str)
    max_size: int = _option(6, "the largest drawn size of each short axis", flag=int)
    set: tuple[str, ...] = _option((), "NAME=VALUE: hold a hyper-parameter fixed (optimizers; "
                                       "repeat it: --set maximize=false --set betas=0.9,0.99)",
                                   flag=str, repeat=True)
    grads: bool = _option(True, "also compare gradients")
    naive: bool = _option(False, "also cross-check refllm's fast reference against its naive one")
    raise_on_failure: bool = _option(True, "raise OracleFailure on a disagreement")
    choices: Mapping[str, str | tuple[str, ...] | None] = dataclasses.field(default_factory=dict)

    @classmethod
    def flags(cls) -> list[dataclasses.Field]:
        """The fields the command line and the plugin offer, in declaration order."""
        return [f for f in dataclasses.fields(cls) if f.metadata.get("flag") is not None]

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The keyword arguments every check takes (all fields but ``choices`` and ``set``, whose
        settings become keyword arguments of their own)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("choices", "set"))

    def kwargs(self, record: OpRecord, *, flag: str = "--{}",
               choice_flag: str | None = None) -> dict[str, Any]:
        """The keyword arguments of ``record``'s check for the options given (those that differ
        from their defaults, and the choices named), `validated`, and the hyper-parameters that
        ``set`` holds fixed, each as its own keyword; `ValueError` naming the bad option. The
        check fills in the rest with the same defaults."""
        out = self.validated(record, flag=flag, choice_flag=choice_flag)
        given = {f.name for f in dataclasses.fields(self) if f.name not in ("choices", "set")
                 and getattr(self, f.name) != f.default}
        given |= {k for k, v in self.choices.items() if v is not None}
        # the choices given (those not given take the check's defaults, and the hook's)
        chosen = {c.keyword: out[c.keyword] for c in record.choices if c.keyword in given}
        settings = _settings(self.set, record, chosen, (choice_flag or flag).format("set"))
        return {**{k: v for k, v in out.items() if k in given}, **settings}

    def validated(self, record: OpRecord, *, flag: str = "--{}",
                  choice_flag: str | None = None) -> dict[str, Any]:
        """Every option, validated against ``record``; `ValueError` (or `TypeError` for a value
        of the wrong type) naming the bad option.

        ``flag`` spells an option in messages (``"--{}"`` for the CLI, ``"--refllm-{}"`` for the
        plugin, ``"{}"`` for Python), ``choice_flag`` an op's own option (default: as ``flag``).
        The choices the record has and that are not given get their defaults.
        """
        from refllm._validation import require_bool, require_int, require_real

        out: dict[str, Any] = {}
        try:
            out["dtype"] = parse_dtype(self.dtype)
        except ValueError as exc:
            raise ValueError(f"{flag.format('dtype')}: {exc}") from None
        try:
            out["device"] = check_device(self.device)
        except ValueError as exc:
            raise ValueError(f"{flag.format('device')}: {exc}") from None
        for name, low in (("examples", 1), ("seed", None), ("threads", 1), ("max_size", 1)):
            value = getattr(self, name)
            if value is not None:
                try:
                    require_int(name, value, low=low)
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"{flag.format(name)}: {exc}") from None
            out[name] = value
        if self.max_size is None:
            raise TypeError(f"{flag.format('max_size')}: must be an int, got None")
        timeout = self.timeout
        if timeout is not None:
            try:
                timeout = require_real("timeout", timeout, low=0.0) or None
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{flag.format('timeout')}: {exc} (seconds; 0 or None: no "
                                "timeout)") from None
        out["timeout"] = timeout
        for name in ("grads", "naive", "raise_on_failure"):
            require_bool(flag.format(name), getattr(self, name))
            out[name] = getattr(self, name)
        chosen = {c.keyword: c.default_value() for c in record.choices}
        chosen.update(record.choice_kwargs(self.choices, flag=choice_flag or flag))
        out.update(chosen)
        if self.contract is not None or record.contract:
            where = (choice_flag or flag).format("contract")
            out["contract"] = _contract(self.contract, record, out["dtype"], where)
        return out


def _settings(texts: Any, record: OpRecord, chosen: Mapping[str, Any],
              flag: str) -> dict[str, Any]:
    """The hyper-parameters ``--set`` holds fixed (`refllm.testing.engine.hyper`), known to
    ``record`` for the choices made (an optimizer's ``like``); `ValueError` naming ``flag``."""
    from refllm.testing.engine.hyper import parse_settings

    texts = (texts,) if isinstance(texts, str) else tuple(texts or ())
    if not texts:
        return {}
    if not record.hyper:
        raise ValueError(f"{flag}: {record.name} has no hyper-parameters to set (--set is for "
                         "the optimizer check)")
    from refllm.testing.engine.record import load

    hook = load(record.hyper)
    known = hook(**chosen)
    import inspect

    # in messages, the choices as the hook takes them: "optimizer like adamw"
    defaults = {k: p.default for k, p in inspect.signature(hook).parameters.items()}
    words = [f"{k} {v}" for k, v in {**defaults, **chosen}.items() if isinstance(v, str)]
    what = " ".join([record.name, *words])
    return parse_settings(texts, known, what=what, flag=flag)


def _contract(contract: Any, record: OpRecord, dtype: Any, flag: str) -> Any:
    """The `Contract` named by ``contract`` (an object or ``"module:name"``), checked against the
    op and the dtype; `ValueError` naming ``flag`` otherwise."""
    from refllm.testing.contract import Contract, apply
    from refllm.testing.engine.targets import load as load_users

    name = contract if isinstance(contract, str) else None
    if name is None and contract is not None and not isinstance(contract, Contract):
        raise TypeError(f"{flag} must be a refllm.testing.contract.Contract, got "
                        f"{type(contract).__name__}")
    try:
        if contract is None:
            return apply(None, record.name, dtype)
        if name is not None:  # as a target: the current folder searched, an exit refused
            contract = load_users(name, callable_only=False, what="contract")
        if not isinstance(contract, Contract):
            raise ValueError(f"{name or 'it'} is a {type(contract).__name__}, not a "
                             "refllm.testing.contract.Contract")
        return apply(contract, record.name, dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{flag}: {exc}") from None
