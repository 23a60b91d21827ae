"""Calls of the target: timed, and told apart as an answer, a refusal ("unsupported") or an error.

Every call of the user's implementation goes through `call_guarded`, so that a check's timeout
(`deadline`) times the target and never the reference, and an exception the check counts as "this
kernel does not support that input" (`UNSUPPORTED_ERRORS`, or a contract's) ends the example as
unsupported instead of failing it. The search (:mod:`refllm.testing.engine.search`) sets both for
the duration of a check with `guarded`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any

from refllm._validation import require_real


class _Unsupported(Exception):
    """The target refused a drawn input with an exception the check treats as "unsupported"."""

UNSUPPORTED_ERRORS: tuple[type[BaseException], ...] = (NotImplementedError,)
"""Exceptions that mean "this kernel does not support that input", not "wrong answer", unless a
spec (a contract) names others: the example is reported as unsupported, never as a pass."""

_refused: contextvars.ContextVar[tuple[type[BaseException], ...]] = contextvars.ContextVar(
    "refllm_unsupported", default=())

DEFAULT_TIMEOUT = 60.0
"""Seconds one call of the target may take before the example fails as timed out; far above what
a kernel-sized example costs on one CPU thread (well under a second)."""
TIMEOUT_SHRINKS = 2
"""Timed-out shrinking attempts after the first timeout before the input found is reported as it
is: each attempt on a hanging input costs the whole timeout."""

_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar("refllm_timeout",
                                                                       default=None)


class _TimedOut(BaseException):
    """Raised into the target when its call outlives the timeout (a BaseException, so that no
    ``except Exception`` in the target, in `call_guarded` or in a judge swallows it)."""



class _StopShrinking(BaseException):
    """Ends the search: shrinking a hanging input further would cost a timeout per attempt."""


def check_timeout(timeout: Any) -> float | None:
    """``timeout`` as seconds, None for no timeout (None or 0); `TypeError`/`ValueError` naming
    ``timeout`` for anything but a finite number >= 0."""
    if timeout is None:
        return None
    seconds = require_real("timeout", timeout, low=0.0)
    return seconds or None


def _in_main_thread() -> bool:
    import signal
    import threading

    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


def _async_exc() -> Any:
    """CPython's ``PyThreadState_SetAsyncExc`` (None where ctypes cannot reach it)."""
    try:
        import ctypes

        return ctypes.pythonapi.PyThreadState_SetAsyncExc
    except (ImportError, AttributeError):  # pragma: no cover - not CPython
        return None


def timeout_available() -> str | None:
    """How a timeout interrupts a target called from this thread: ``"signal"`` (the main thread
    of a Unix process), ``"async"`` (another thread, under CPython) or None (no way here)."""
    if _in_main_thread():
        return "signal"
    return "async" if _async_exc() is not None else None


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise `_TimedOut` in this thread when the block outlives ``seconds`` (None: never).

    In the main thread of a Unix process, a ``SIGALRM`` interval timer: it interrupts Python code
    and a blocking call such as ``time.sleep`` at once; the previous ``SIGALRM`` handler and any
    timer already running (pytest-timeout's, say) are restored, the latter with its time left. In
    any other thread (CPython), a watchdog thread raises the exception into this one with
    ``PyThreadState_SetAsyncExc``: that interrupts Python code only, so a blocking call is
    interrupted when it returns. Either way a C or CUDA kernel that never returns to the
    interpreter cannot be interrupted. Where neither exists, the block runs without a limit.
    """
    if seconds is None:
        yield
        return
    how = timeout_available()
    if how == "signal":
        with _alarm(seconds):
            yield
    elif how == "async":
        with _watchdog(seconds):
            yield
    else:  # pragma: no cover - neither signals nor CPython: run without a limit
        yield


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    import signal
    import time

    def alarm(signum: int, frame: Any) -> None:
        raise _TimedOut(seconds)

    previous = signal.signal(signal.SIGALRM, alarm)
    start = time.monotonic()
    try:
        before, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    except BaseException:
        signal.signal(signal.SIGALRM, previous)
        raise
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, previous)
        if before > 0.0:  # someone else's timer: give it back the time it has left
            left = before - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-6), interval)


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    import ctypes
    import threading

    set_async_exc = _async_exc()
    ident = ctypes.c_ulong(threading.get_ident())
    lock = threading.Lock()
    state = {"done": False, "fired": False}

    def fire() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                set_async_exc(ident, ctypes.py_object(_TimedOut))

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            state["done"] = True
            if state["fired"]:  # if it is still pending (the block ended first), drop it
                set_async_exc(ident, None)  # None: NULL, which clears it
        timer.cancel()

def refuse_unsupported(exc: BaseException) -> None:
    """Raise `_Unsupported` when ``exc`` is one of the running check's "unsupported" errors."""
    refused = _refused.get()
    if refused and isinstance(exc, refused):
        raise _Unsupported(describe_exception(exc)) from exc

def call_guarded(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """Run ``fn`` (a call of the target); return ``(result, None)`` or ``(None, exception)``.

    An exception the running check counts as "unsupported input" (`refuse_unsupported`) is not
    returned: it ends the example, which the engine then reports as unsupported. Within a check
    the call is timed (`deadline`, the check's ``timeout``): one that outlives it ends the example
    with `_TimedOut`, which the engine reports as "finishes in time". Every call of the target
    goes through here, so the reference's computations are never timed."""
    try:
        with deadline(_timeout.get()):  # the running check's timeout (`run`), None outside one
            return fn(), None
    except Exception as exc:  # the user's code may raise anything
        refuse_unsupported(exc)
        return None, exc


RECOMPILE_LIMIT = "hit Dynamo's recompile limit"
"""Said of a ``torch.compile(fullgraph=True)`` target that raised at the recompile limit."""


def describe_exception(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if type(exc).__name__ == "FailOnRecompileLimitHit":  # torch.compile(..., fullgraph=True)
        limit = _recompile_limit()
        return (f"{type(exc).__name__}: the compiled target (fullgraph=True) {RECOMPILE_LIMIT}"
                f"{f' ({limit})' if limit else ''} and raised, as fullgraph targets do instead "
                "of falling back to eager: the drawn shapes change more often than that. "
                "Compile with dynamic=True, or raise torch._dynamo.config.recompile_limit")
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _recompile_limit() -> str:
    import sys

    config = getattr(sys.modules.get("torch._dynamo"), "config", None)
    limit = getattr(config, "recompile_limit", None)
    return "" if limit is None else f"torch._dynamo.config.recompile_limit = {limit}"


@contextlib.contextmanager
def guarded(refused: tuple[type[BaseException], ...], timeout: float | None) -> Iterator[None]:
    """Within the block, `call_guarded` reports ``refused`` exceptions as unsupported and times
    each call at ``timeout`` seconds (None: no limit)."""
    token, timing = _refused.set(refused), _timeout.set(timeout)
    try:
        yield
    finally:
        _timeout.reset(timing)
        _refused.reset(token)
