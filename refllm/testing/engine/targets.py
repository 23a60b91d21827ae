"""Targets: the user's implementation as an object and as the ``"module:name"`` that imports it.

A check takes a function, a class or a ``"module:name"`` string (`resolve`); the command line and
the pytest plugin take the string (`load`). The name found for an object is what the repro snippet
imports (`import_lines`); an object that cannot be imported by name gets lines the user fills in
(:mod:`refllm.testing.engine.binding`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any


def resolve(target: Any, argument: str = "the checked implementation") -> tuple[Any, str]:
    """``(object, "module:name")`` for a callable/class or a ``"module:name"`` string.

    The name is ``""`` when the object cannot be imported back by name (a lambda, a local function):
    the repro snippet then asks the user to define ``fn`` themselves. Anything else (``42``, a
    tensor) is a `TypeError` naming what was passed, before any example runs; a string that
    cannot be loaded, or names something that is not callable, a `ValueError` (`load`).
    """
    if isinstance(target, str):
        return load(target), target
    if not callable(target):
        raise TypeError(f"{argument} must be a function or class (or a 'module:name' "
                        f"string), got {type(target).__name__}: {target!r:.80}")
    return target, _name_of(target)


def _name_of(target: Any) -> str:
    mod, qual = getattr(target, "__module__", None), getattr(target, "__qualname__", None)
    if mod and qual and "<" not in qual:
        try:
            if _getattr_path(importlib.import_module(mod), qual) is target:
                return f"{mod}:{qual}"
        except (ImportError, AttributeError):
            pass
    return ""


def load(spec: str, *, callable_only: bool = True, what: str = "target") -> Any:
    """Import the user's ``"package.module:attr.path"``; `ValueError` naming it when impossible.

    While the module is imported, the current folder is on ``sys.path`` (first, as
    ``python -m`` puts it; a console script's ``sys.path`` lacks it), so ``refllm check sdpa
    mykernel:attn`` finds ``./mykernel.py``; ``sys.path`` is restored afterwards (the module and
    what it imported at its top level stay in ``sys.modules``). A module that exits while it is
    imported (``sys.exit()`` at its top level, say) or raises is a usage error naming the module
    and the exit code or the exception, never an exit status of its own (``sys.exit(0)`` would
    read as a pass). With ``callable_only`` the object must be callable (a function, or a class
    such as an optimizer's). ``what`` names the object in messages ("target", "contract").
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(f"{what} must be written 'module:name', got {spec!r}")
    mod, _, qual = spec.partition(":")
    if not mod or not qual:
        raise ValueError(f"{what} must be written 'module:name', got {spec!r}")
    try:
        with _cwd_on_path():
            module = importlib.import_module(mod)
    except SystemExit as exc:
        raise ValueError(f"module {mod!r} of {what} {spec!r} exited while it was imported "
                         f"(SystemExit with code {exc.code!r}): a {what}'s module must import "
                         f"without exiting (put its script part under if __name__ == "
                         f"'__main__')") from None
    except Exception as exc:  # an import error, or an error raised while importing
        raise ValueError(f"cannot import module {mod!r} of {what} {spec!r}: "
                         f"{type(exc).__name__}: {exc}") from exc
    try:
        obj = _getattr_path(module, qual)
    except AttributeError as exc:
        raise ValueError(f"module {mod!r} has no attribute {qual!r} ({what} {spec!r})") from exc
    if callable_only and not callable(obj):
        raise ValueError(f"{what} {spec!r} is a {type(obj).__name__}, not a function or class "
                         f"(callable) to check")
    return obj


@contextlib.contextmanager
def _cwd_on_path() -> Iterator[None]:
    """The current folder first on ``sys.path`` within the block (unless already there)."""
    here = os.getcwd()
    if here in sys.path or "" in sys.path:
        yield
        return
    sys.path.insert(0, here)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # the import may have removed it itself
            sys.path.remove(here)


def _getattr_path(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def import_lines(name: str, alias: str = "fn", obj: Any = None) -> str:
    """Snippet lines that bind ``alias`` to the user's object, imported by ``name``; without a
    name, what the user must fill in for ``obj`` (`refllm.testing.engine.binding.bind_lines`)."""
    if not name:
        from refllm.testing.engine.binding import bind_lines

        return bind_lines(obj, alias)
    mod, _, qual = name.partition(":")
    if "." in qual:
        return f"import {mod}\n{alias} = {mod}.{qual}"
    return f"from {mod} import {qual} as {alias}"
