"""Records: append-only JSON lines; a full disk is a clear error and earlier records survive."""

import errno
import os

import pytest

from refllm.train import RecordWriteError, append_record, read_records


def test_records_are_appended_in_order_and_read_back_by_kind(tmp_path):
    path = tmp_path / "records.jsonl"
    for step in (1, 2):
        append_record(path, {"kind": "eval", "step": step})
    append_record(path, {"kind": "run", "status": "ok"})
    assert [r["step"] for r in read_records(path, kind="eval")] == [1, 2]
    assert [r["kind"] for r in read_records(path)] == ["eval", "eval", "run"]
    assert all("time" in r for r in read_records(path))


def test_a_full_disk_is_a_clear_error_and_the_earlier_records_are_intact(tmp_path, monkeypatch):
    path = tmp_path / "records.jsonl"
    append_record(path, {"kind": "eval", "step": 1})
    before = path.read_bytes()
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills in the middle of the line
        real_write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(RecordWriteError, match="No space left on device.*earlier records are"):
        append_record(path, {"kind": "run", "status": "ok"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert read_records(path) == [dict(read_records(path)[0])]


def test_an_unfinished_last_line_is_not_a_record(tmp_path):
    path = tmp_path / "records.jsonl"
    append_record(path, {"kind": "eval", "step": 1})
    with open(path, "a") as f:
        f.write('{"kind": "run", "sta')
    assert [r["kind"] for r in read_records(path)] == ["eval"]
