"""Atomic writes: a failing writer leaves neither the target nor a temporary file."""

from __future__ import annotations

import signal
import subprocess
import sys

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


def test_json_is_strict_with_a_note_on_what_was_not_finite(tmp_path):
    """Python's json writes NaN/Infinity, which strict readers reject; we write null and say
    where, so the file parses with ``parse_constant`` refusing those tokens."""
    import json
    import math

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    summary = {"elbo": -3.5, "svi": {"snr": [1.0, math.nan], "khat": math.inf}, "n": 3}
    path = atomic_write_json(tmp_path / "s.json", summary)
    loaded = json.loads(path.read_text(), parse_constant=refuse)
    assert loaded["svi"] == {"snr": [1.0, None], "khat": None}
    assert loaded["non_finite"] == ["svi.snr[1]: nan", "svi.khat: inf"]
    assert loaded["elbo"] == -3.5 and loaded["n"] == 3
    clean = atomic_write_json(tmp_path / "c.json", {"a": 1.0})
    assert "non_finite" not in json.loads(clean.read_text())


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_users_umask_not_mkstemps_0600(tmp_path, umask, mode):
    import os

    old = os.umask(umask)
    try:
        path = atomic_write_json(tmp_path / "s.json", {"a": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def _limit_file_size():  # in the child: writes past 64 KiB fail with EFBIG (no SIGXFSZ kill)
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_a_write_the_file_system_refuses_ends_with_one_line_naming_the_file(tmp_path):
    """A real refused write (the file-size limit, EFBIG: as a full disk's ENOSPC, the kernel
    fails the write): a bare OSError traceback before; now one line naming the file and the
    cause, exit code 1, no partial file, no temporary, and the earlier output kept."""
    out = tmp_path / "out"
    out.mkdir()
    earlier = out / "big.parquet"
    earlier.write_bytes(b"earlier")
    argv = ["catalog", "simulate", str(earlier), "--num-events", "20000"]
    done = subprocess.run([sys.executable, "-m", "vilab", *argv], capture_output=True, text=True,
                          preexec_fn=_limit_file_size, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("vilab ")]
    assert line.startswith(f"vilab catalog: error: '{earlier}': ")  # (pyarrow's words, then)
    assert "File too large; nothing was written there (an earlier file is kept)" in line
    assert earlier.read_bytes() == b"earlier"
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))
