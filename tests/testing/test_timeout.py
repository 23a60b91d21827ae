"""A call of the target that outlives the check's timeout fails the example as "finishes in time";
only the target is timed; the alarm is always cancelled and whatever timer ran before is restored;
a check run from another thread is timed too."""

from __future__ import annotations

import signal
import threading
import time

import pytest
import torch
import torch.nn.functional as F

from refllm.testing import OracleFailure, check_mse, judge
from refllm.testing.engine.calls import (
    DEFAULT_TIMEOUT,
    TIMEOUT_SHRINKS,
    _TimedOut,
    check_timeout,
    deadline,
)
from refllm.testing.engine.case import Case
from refllm.testing.engine.options import CheckOptions
from refllm.testing.registry import RECORDS


def _sleeps(seconds: float) -> None:
    """Sleep in short naps: a worker thread's timeout interrupts Python code between them."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.01)


DEFAULT_CALLS = {(3, 4), (5,), (3, 700)}  # the shapes of check_mse's fixed default calls


def _hangs_on_long_inputs(input, target, reduction="mean"):
    if input.numel() > 3:
        _sleeps(60)  # far longer than any timeout below
    return F.mse_loss(input, target, reduction=reduction)


def test_a_hanging_call_fails_as_timed_out_on_the_input_it_hung_on():
    report = check_mse(_hangs_on_long_inputs, examples=20, seed=0, timeout=0.2,
                       raise_on_failure=False)
    assert report.verdict == "failed" and report.failed_properties == ["finishes in time"]
    text = str(report)
    assert "finishes in time: timed out on this input (float32[" in text
    assert "within the timeout of 0.2 s" in text
    assert report.case.args[0].numel() > 3  # the reported input is one that hangs
    assert "reproduce it with" in text


def test_shrinking_a_hanging_input_stops_after_a_few_timeouts():
    calls = {"timed out": 0}

    def hangs_on_drawn_inputs(input, target, reduction="mean"):
        if tuple(input.shape) not in DEFAULT_CALLS:  # drawn, so shrunk: every attempt hangs
            try:
                _sleeps(60)
            except _TimedOut:
                calls["timed out"] += 1
                raise
        return F.mse_loss(input, target, reduction=reduction)

    report = check_mse(hangs_on_drawn_inputs, examples=20, seed=0, timeout=0.1,
                       raise_on_failure=False)
    assert report.failed_properties == ["finishes in time"]
    assert calls["timed out"] == TIMEOUT_SHRINKS + 1
    assert "not shrunk further" in report.note and "may not be minimal" in str(report)


def test_the_reference_is_not_timed(monkeypatch):
    import refllm.ops.mse as mse

    real, slow = mse.mse_loss, {"calls": 0}

    def slow_reference(*args, **kwargs):
        slow["calls"] += 1
        if slow["calls"] == 1:
            time.sleep(0.5)  # the reference's first call outlives the target's timeout
        return real(*args, **kwargs)

    monkeypatch.setattr(mse, "mse_loss", slow_reference)
    report = check_mse(F.mse_loss, examples=1, seed=0, timeout=0.2)
    assert report.passed and slow["calls"] > 1


def test_judge_times_the_target_too():
    case = Case((torch.ones(2, 3), torch.zeros(2, 3)), {})
    with pytest.raises(OracleFailure, match="timed out on .* within the timeout of 0.1 s"):
        judge("mse", _hangs_on_long_inputs, case, timeout=0.1)


def _keep_alarm(handler_calls):
    def handler(signum, frame):
        handler_calls.append(signum)

    return handler


@pytest.mark.parametrize("target", [F.mse_loss, _hangs_on_long_inputs])
def test_the_callers_alarm_handler_and_timer_are_restored(target):
    fired: list[int] = []
    before = signal.signal(signal.SIGALRM, _keep_alarm(fired))
    mine = signal.getsignal(signal.SIGALRM)
    signal.setitimer(signal.ITIMER_REAL, 1000.0)
    try:
        check_mse(target, examples=5, seed=0, timeout=0.1, raise_on_failure=False)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert signal.getsignal(signal.SIGALRM) is mine
        assert 0.0 < left < 1000.0 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, before)


def test_the_alarm_is_cancelled_when_the_block_raises():
    before = signal.getsignal(signal.SIGALRM)
    with pytest.raises(KeyError), deadline(0.05):
        raise KeyError("the target's own error")
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before
    time.sleep(0.1)  # had the alarm survived, it would fire here


def _in_a_thread(fn):
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            out["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_a_check_run_from_a_worker_thread_is_timed_too():
    report = _in_a_thread(lambda: check_mse(_hangs_on_long_inputs, examples=20, seed=0,
                                            timeout=0.2, raise_on_failure=False))
    assert report.failed_properties == ["finishes in time"] and not report.warnings


def test_a_worker_threads_deadline_does_not_fire_after_its_block():
    def run():
        with deadline(0.05):
            pass  # returns long before the deadline
        _sleeps(0.2)  # a stray timeout would be raised here
        with pytest.raises(_TimedOut), deadline(0.05):
            _sleeps(60)
        _sleeps(0.2)
        return "done"

    assert _in_a_thread(run) == "done"


def test_the_default_timeout_and_its_validation():
    assert DEFAULT_TIMEOUT == 60.0 and check_timeout(None) is None and check_timeout(0) is None
    assert check_timeout(2) == 2.0
    with pytest.raises(ValueError, match=r"timeout must lie in \[0.0, inf\], got -1.0"):
        check_mse(F.mse_loss, timeout=-1)
    with pytest.raises(TypeError, match="timeout must be a real number, got str"):
        check_mse(F.mse_loss, timeout="5")
    with pytest.raises(TypeError, match="timeout must be a real number"):
        check_mse(F.mse_loss, timeout=True)


def test_the_common_options_take_a_timeout():
    record = RECORDS["mse"]
    assert CheckOptions(timeout=0.5).kwargs(record)["timeout"] == 0.5
    assert CheckOptions(timeout=0).kwargs(record)["timeout"] is None  # 0: no timeout
    assert "timeout" not in CheckOptions().kwargs(record)  # the check's default
    with pytest.raises(ValueError, match=r"--refllm-timeout: timeout must lie in"):
        CheckOptions(timeout=-2.0).kwargs(record, flag="--refllm-{}")
