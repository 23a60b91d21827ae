"""The check engine: Hypothesis draws inputs, a spec judges each one, the shrunk failure is kept.

A *spec* (one per op: `refllm.testing.sdpa.check`, ...) knows how to draw an example, how to judge
the user's implementation on it (a list of `Outcome`, one per property) and how to write a repro
snippet. The engine runs the Hypothesis search with the active settings profile, for ``examples``
examples (default `refllm.testing.engine.settings.default_examples`: 40, `DEFAULT_EXAMPLES`, or the
active refllm profile's count), lets Hypothesis shrink the first
disagreement to a minimal example, and builds the `Report` from the last failing call, which is
Hypothesis' final replay of the shrunk example.

Before the search, the engine judges the spec's fixed examples (``spec.explicit``: the op's
default call, e.g. ``F.cross_entropy(logits, targets)`` with no keyword), as Hypothesis'
``@example`` does: the same ones whatever the seed or profile, counted among the examples, not
shrunk (they are small already). A failure there is reported as any other.

``seed=`` fixes the drawn examples: the same seed draws the same examples from a script, from
``python -c``, under pytest and at any thread count (`hermetic_generation`), for a given version
of Hypothesis and refllm's strategies. Without a seed the active profile decides (``ci``:
derandomised, so also reproducible; ``dev``/``thorough``: random).

``threads=`` is the number of intra-op threads (``torch.set_num_threads``) the reference and the
target run at during the check, restored afterwards (also when the check raises). The default,
`DEFAULT_THREADS` = 1, is the fastest on the oracle's small examples: a thread pool's start-up per
op costs more than the op, and on a loaded machine a second thread waits for a core (measured in
docs/oracle.md). ``threads=None`` leaves the caller's setting alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import warnings
from collections.abc import Iterator
from typing import Any, Protocol

import hypothesis
import torch
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky, Unsatisfiable

from refllm._validation import require_int
from refllm.testing.engine.calls import (
    DEFAULT_TIMEOUT,
    RECOMPILE_LIMIT,
    TIMEOUT_SHRINKS,
    UNSUPPORTED_ERRORS,
    _StopShrinking,
    _TimedOut,
    _Unsupported,
    check_timeout,
    guarded,
    timeout_available,
)
from refllm.testing.engine.policy import Verdict
from refllm.testing.engine.report import (
    Discrepancy,
    OracleFailure,
    PropertyResult,
    Report,
)
from refllm.testing.engine.settings import default_examples


@dataclasses.dataclass
class Outcome:
    """The judgement of one property on one example."""

    property: str
    passed: bool
    message: str = ""
    verdict: Verdict | None = None


class Spec(Protocol):
    """What the engine needs from an op's check."""

    op: str
    properties: list[str]  # display order; outcomes for other names are appended as seen

    def strategy(self) -> st.SearchStrategy: ...

    def evaluate(self, drawn: Any) -> list[Outcome]: ...

    def snippet(self, drawn: Any, failed: list[str]) -> str: ...

    def case_of(self, drawn: Any) -> Any: ...

    # optional: fixed drawn objects (the op's default call) judged first, whatever the seed
    # explicit: list[Any]


class _Disagreement(AssertionError):
    pass


class _AllRefused(Exception):
    """The target refused the first ``2 x examples`` (at least 20) inputs and took none."""


DEFAULT_THREADS = 1
"""Intra-op threads of a check unless the caller passes ``threads=`` (see the module docs)."""


@contextlib.contextmanager
def intra_op_threads(threads: int | None) -> Iterator[None]:
    """Run the block at ``threads`` intra-op threads, then restore the caller's count.

    ``None`` changes nothing. Raises `ValueError`/`TypeError` naming ``threads`` when it is not a
    positive integer.
    """
    if threads is None:
        yield
        return
    require_int("threads", threads, low=1)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class _Search:
    """The state of one search, and the function Hypothesis calls on each drawn example.

    ``examples`` counts the judged examples of the search (not the shrinking calls after the
    first failure); ``failing`` holds the last failing example and its failed outcomes, which
    Hypothesis' final replay of the shrunk example leaves there; ``unsupported`` and ``refusal``
    count and describe the examples the target refused; ``gave_up`` stops the search once the
    target has refused ``give_up_after`` examples and taken none.
    """

    spec: Spec
    timeout: float | None
    give_up_after: int
    rows: dict[str, PropertyResult]
    examples: int = 0
    failing: tuple[Any, list[Outcome]] | None = None
    unsupported: int = 0
    refusal: str = ""
    gave_up: bool = False
    timeouts: int = 0

    @property
    def failed_once(self) -> bool:
        return self.failing is not None

    def judge(self, drawn: Any) -> None:
        if self.gave_up:
            raise _AllRefused()
        timed_out = False
        try:
            outcomes = self.spec.evaluate(drawn)  # `call_guarded` times each call of the target
        except _TimedOut:
            timed_out, self.timeouts = True, self.timeouts + 1
            outcomes = [_timed_out(self.spec, drawn, self.timeout)]
        except _Unsupported as exc:
            self._refused(exc, drawn)
            hypothesis.reject()  # not judged: Hypothesis draws another example instead
        searching = not self.failed_once  # shrinking calls are not counted as examples
        self.examples += searching
        for o in outcomes:
            row = self.rows.setdefault(o.property, PropertyResult(o.property))
            row.examples += searching
            row.failures += searching and not o.passed
        failed = [o for o in outcomes if not o.passed]
        if failed:
            self.failing = (drawn, failed)
            if timed_out and self.timeouts > TIMEOUT_SHRINKS:  # this input is the one reported
                raise _StopShrinking()
            raise _Disagreement(", ".join(o.property for o in failed))

    def _refused(self, exc: BaseException, drawn: Any) -> None:
        if self.failed_once:
            return
        self.unsupported += 1
        self.refusal = self.refusal or f"{exc} on {_describe(self.spec, drawn)}"
        if self.examples == 0 and self.unsupported >= self.give_up_after:
            self.gave_up = True  # nothing it takes in sight: stop searching
            raise _AllRefused() from None


def run(spec: Spec, *, target: str, dtype: Any, device: str, examples: int | None,
        seed: int | None, raise_on_failure: bool, features: tuple[str, ...] = (),
        threads: int | None = DEFAULT_THREADS, timeout: float | None = DEFAULT_TIMEOUT,
        fixed: Any = None) -> Report:
    """Search for a disagreement; return (or raise, as `OracleFailure`) the `Report`.

    The search runs at ``threads`` intra-op threads (`intra_op_threads`). An example the target
    refuses with one of the spec's ``unsupported`` exceptions (default `UNSUPPORTED_ERRORS`) is
    counted as unsupported, not judged, and the search goes on; a check in which every example
    was refused fails as "unsupported". A compiled target that Dynamo silently sent back to eager
    (its recompile limit hit) is named in the report's warnings and as an `OracleWarning`.

    ``timeout``: seconds one call of the target may take (`deadline`; None or 0: no limit); the
    reference's computations are not timed. An example on which a call takes longer fails the
    property "finishes in time" and is shrunk like any failure, but after the first timeout at
    most `TIMEOUT_SHRINKS` more timed-out attempts are made: the report then gives the smallest
    input that timed out so far and says that it may not be minimal.

    ``fixed``: one drawn example (what ``spec.strategy()`` draws) to judge instead of searching;
    the spec's fixed default calls are not judged then (`refllm.testing.judge`).
    """
    require_device(device)
    timeout = check_timeout(timeout)
    report = Report(op=spec.op, target=target, dtype=dtype, device=str(device), seed=seed,
                    features=tuple(features))
    if fixed is not None:
        with intra_op_threads(threads):
            _judge_one(spec, fixed, report, timeout)
        if raise_on_failure and not report.passed:
            raise OracleFailure(report)
        return report
    search = _Search(spec, timeout, give_up_after=max(20, 2 * (examples or default_examples())),
                     rows={name: PropertyResult(name) for name in spec.properties})
    test = given(spec.strategy())(search.judge)
    for drawn in reversed(getattr(spec, "explicit", [])):  # Hypothesis' @example: run first
        test = hypothesis.example(drawn)(test)
    test = settings(_settings(examples, seed))(test)
    if seed is not None:
        test = hypothesis.seed(seed)(test)
    refused = tuple(getattr(spec, "unsupported", UNSUPPORTED_ERRORS))
    try:
        with intra_op_threads(threads), hermetic_generation(), _eager_fallbacks() as fallbacks, \
                guarded(refused, timeout):
            test()
    except _Disagreement:
        pass
    except _StopShrinking:
        report.note = (f"not shrunk further: after {TIMEOUT_SHRINKS + 1} timed-out inputs "
                       f"(each attempt costs the whole timeout, {timeout:g} s) the last one is "
                       f"reported, so it may not be minimal")
    except (Unsatisfiable, _AllRefused):
        pass  # every drawn example was refused: reported as unsupported below
    except Flaky as exc:
        report.note = f"the failure did not reproduce on replay (non-deterministic?): {exc}"
    if timeout is not None and timeout_available() is None:  # pragma: no cover - not CPython
        fallbacks.append(f"the check ran without its timeout of {timeout:g} s: this thread can "
                         f"take no signal, and this Python cannot raise into a thread")
    if search.failing is not None and any(RECOMPILE_LIMIT in o.message
                                          for o in search.failing[1]):
        fallbacks[:] = [m for m in fallbacks if "fell back to eager" not in m]  # it raised
    for message in fallbacks:
        report.warnings.append(message)
        warnings.warn(message, OracleWarning, stacklevel=3)
    _fill(report, search)
    explicit = getattr(spec, "explicit", [])
    if search.failing is not None and any(_same(search.failing[0], e) for e in explicit):
        report.note = " ".join(filter(None, [report.note, FIXED_NOTE]))
    if raise_on_failure and not report.passed:
        raise OracleFailure(report)
    return report


def _same(a: Any, b: Any) -> bool:
    """``a`` is ``b``, or both are tuples of the same objects (a drawn (case, seed) pair)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(x is y or x == y if isinstance(x, int) else x is y
                                        for x, y in zip(a, b))
    return a is b


FIXED_NOTE = ("this input is one of the op's fixed default calls, judged first whatever the "
              "seed or profile: every seed repeats this failure (it is not shrunk: it is small "
              "already)")
"""The report's note when the failing example is a fixed default call."""


def _fill(report: Report, search: _Search) -> None:
    """The report's counts, property rows and (after a failure) the shrunk example."""
    report.examples = search.examples
    report.unsupported = search.unsupported
    report.unsupported_example = search.refusal
    report.properties = list(search.rows.values())
    if search.failing is not None:
        drawn, failed = search.failing
        report.drawn = drawn
        report.discrepancies = [Discrepancy(o.property, o.message, o.verdict) for o in failed]
        for o in failed:
            search.rows[o.property].failed_when_shrunk = True
        report.case = search.spec.case_of(drawn)
        report.snippet = search.spec.snippet(drawn, [o.property for o in failed])


TIMED_OUT = "finishes in time"
"""The property that fails on an example where a call of the target outlived the timeout."""


def _timed_out(spec: Spec, drawn: Any, timeout: float | None) -> Outcome:
    return Outcome(TIMED_OUT, False, f"timed out on this input {_describe(spec, drawn)}: a call "
                                     f"of the target did not return within the timeout of "
                                     f"{timeout:g} s")


def _judge_one(spec: Spec, drawn: Any, report: Report, timeout: float | None) -> None:
    """Fill ``report`` with the spec's judgement of one example (``run(fixed=...)``)."""
    try:
        with guarded(tuple(getattr(spec, "unsupported", UNSUPPORTED_ERRORS)), timeout):
            outcomes = spec.evaluate(drawn)
    except _TimedOut:
        outcomes = [_timed_out(spec, drawn, timeout)]
    except _Unsupported as exc:
        report.unsupported, report.unsupported_example = 1, f"{exc} on {_describe(spec, drawn)}"
        return
    report.examples = 1
    rows = {name: PropertyResult(name) for name in spec.properties}
    for o in outcomes:
        row = rows.setdefault(o.property, PropertyResult(o.property))
        row.examples, row.failures, row.failed_when_shrunk = 1, int(not o.passed), not o.passed
    report.properties = list(rows.values())
    failed = [o for o in outcomes if not o.passed]
    if failed:
        report.discrepancies = [Discrepancy(o.property, o.message, o.verdict) for o in failed]
        report.case = spec.case_of(drawn)
        report.snippet = spec.snippet(drawn, [o.property for o in failed])


class OracleWarning(UserWarning):
    """The check ran, but what it checked may not be what the user meant (see the message)."""


def require_device(device: Any) -> None:
    """`ValueError` unless ``device`` names a device this machine has (``"cuda"`` without CUDA
    would otherwise fail deep inside the first example as a "disagreement")."""
    from refllm.testing.engine.options import check_device

    check_device(device)


def _describe(spec: Any, drawn: Any) -> str:
    """A one-line description of a drawn example (tensor shapes and keywords) for a refusal."""
    try:
        case = spec.case_of(drawn)
    except Exception:  # the description must never break the check
        return "a drawn example"
    describe = getattr(case, "describe", None)
    if callable(describe):
        return str(describe())
    return f"{type(case).__name__} example"


class _FallbackLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "hit config." in text:  # Dynamo's recompile (cache size) limit
            first = text.splitlines()
            detail = " ".join(line.strip() for line in first[:2])
            message = (f"a compiled target fell back to eager: {detail}. The examples after it "
                       "ran the eager code, not the compiled kernel; raise "
                       "torch._dynamo.config.recompile_limit, or compile with dynamic=True")
            if message not in self.messages:
                self.messages.append(message)


@contextlib.contextmanager
def _eager_fallbacks() -> Iterator[list[str]]:
    """Collect Dynamo's "hit config.recompile_limit" warnings logged while the block runs.

    Dynamo logs the warning once per function (on ``torch._dynamo.convert_frame``'s logger) and
    from then on runs the function eagerly, so a check of a ``torch.compile``d kernel would go on
    checking the eager code in silence. Attaching a handler imports nothing.
    """
    logger = logging.getLogger("torch._dynamo")
    handler = _FallbackLog()
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def hermetic_generation() -> Iterator[None]:
    """Make what Hypothesis draws depend on the seed only, not on the calling program.

    Hypothesis (>= 6.13x) sometimes draws an integer or float from a pool of constants it collects
    from the source of every *local* module in ``sys.modules`` (``_get_local_constants`` in
    ``hypothesis.internal.conjecture.providers``). So the same ``seed`` drew different examples
    from a script (whose own constants, e.g. ``400``, joined the pool) and from ``python -c``.
    Within this block the local pool is empty (Hypothesis' global constants still apply); if a
    future Hypothesis moves these internals, this degrades to a no-op.
    """
    try:
        from hypothesis.internal.conjecture import providers
        original, cache = providers._get_local_constants, providers.CONSTANTS_CACHE
        empty = providers.Constants()
    except (ImportError, AttributeError):  # pragma: no cover - other Hypothesis versions
        yield
        return
    cache.cache.clear()
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original
        cache.cache.clear()


def _settings(examples: int | None, seed: int | None) -> settings:
    current = settings()  # the active profile (refllm's, or the user's own)
    kwargs: dict[str, Any] = dict(
        deadline=None, database=None, verbosity=Verbosity.quiet, report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck), print_blob=False,
        # Hypothesis' explain phase (which parts of the failing example matter) feeds a message
        # the report never shows, and it took 28 of 42 s of a failing optimizer check
        phases=tuple(p for p in current.phases if p != Phase.explain),
    )
    if examples is not None and examples < 1:
        raise ValueError(f"examples must be a positive number of examples, got {examples!r}")
    kwargs["max_examples"] = default_examples() if examples is None else examples
    if seed is not None:
        kwargs["derandomize"] = False
    return settings(current, **kwargs)
