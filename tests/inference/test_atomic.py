"""Files replaced whole or not at all (issue #37): temporaries of dead writers are removed by
the next write of the same file, those of running ones are left, and a failed write names the
file and keeps what was there."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from inference.data.atomic import remove_stale_temporaries, replaced_atomically

_WRITER = """
import sys, time
from inference.data.atomic import replaced_atomically
from pathlib import Path
with replaced_atomically(sys.argv[1]) as tmp:
    Path(tmp).write_bytes(b"half a catalog")
    print("writing", flush=True)
    time.sleep(60)
"""


def _writer(path):
    """A process in the middle of writing ``path`` (its temporary exists), and that temporary."""
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "writing"
    (tmp,) = path.parent.glob(f".{path.name}.{proc.pid}.*.tmp")
    return proc, tmp


def test_the_temporary_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    """SIGKILL (no handler runs) mid-write leaves ``.NAME.PID.*.tmp``: it used to stay for
    good (25 MB in one trial); the next write of the same file removes it."""
    path = tmp_path / "catalog.parquet"
    proc, tmp = _writer(path)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert tmp.exists() and not path.exists()
    with replaced_atomically(path) as new:
        Path(new).write_bytes(b"whole")
    assert not tmp.exists() and path.read_bytes() == b"whole"
    assert not list(tmp_path.glob("*.tmp"))


def test_the_temporary_of_a_running_writer_is_left_alone(tmp_path):
    """Another run writing the same file now: its temporary is not stale."""
    path = tmp_path / "out.json"
    proc, tmp = _writer(path)
    try:
        old = tmp_path / ".out.json.abc123.tmp"  # an earlier format's, no PID: stale
        old.write_bytes(b"?")
        assert remove_stale_temporaries(path) == [old]
        assert tmp.exists()
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_a_failed_write_names_the_target_and_keeps_the_earlier_file(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("earlier")
    with pytest.raises(OSError) as info, replaced_atomically(path) as tmp:
        Path(tmp).write_bytes(b"part")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert info.value.strerror.startswith("No space left on device; nothing was written")
    assert path.read_text() == "earlier" and not list(tmp_path.glob(".*.tmp"))


def test_an_error_of_another_file_inside_the_block_keeps_its_own_name(tmp_path):
    """An input that fails while the output is written (convert reads its CSV inside the
    block) is reported as the input's error, not as a failed write of the output."""
    path, source = tmp_path / "out.parquet", tmp_path / "in.csv"
    with pytest.raises(FileNotFoundError) as info, replaced_atomically(path):
        source.read_text()
    assert info.value.filename == str(source) and "nothing was written" not in str(info.value)
    assert not path.exists() and not list(tmp_path.glob(".*.tmp"))
