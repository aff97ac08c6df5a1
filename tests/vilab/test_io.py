"""Atomic writes: a failing writer leaves neither the target nor a temporary file."""

from __future__ import annotations

import pytest

from vilab.io import _atomic, atomic_write_json


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "x.json"

    def boom(f):
        f.write(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _atomic(target, boom)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = atomic_write_json(tmp_path / "x.json", {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"a": object()})
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
