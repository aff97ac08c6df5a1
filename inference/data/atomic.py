"""Files replaced whole or not at all: a writer writes to a temporary name beside the target,
which is renamed over it at the end (``os.replace`` is atomic within a file system), so a crash,
a signal, a full disk or a bad input never leaves a half-written file and keeps any earlier one.

Temporaries are named ``.NAME.PID.RANDOM.tmp`` after the process writing them. One left by a
process that no longer runs (killed by SIGKILL, a power cut) is removed by the next write of
the same target; one of a process still running (another run writing the same file) is left.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["remove_stale_temporaries", "replaced_atomically"]


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries of ``path`` (``.NAME.*.tmp`` beside it) whose writer process is
    gone: named by a PID that no longer runs, or without one; returns those removed."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = [tmp for tmp in sorted(path.parent.glob(f".{path.name}.*.tmp"))
             if not _running(tmp.name[len(path.name) + 2 :].split(".")[0])]  # fmt: skip
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():  # this process's own earlier write, cut short
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):  # gone, or not a PID at all
        return False
    except PermissionError:  # another user's process
        pass
    return True


@contextlib.contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary file name beside ``path`` to write; on leaving, rename it over
    ``path``, or remove it if the block raised. The file gets the permissions of any file the
    user creates (0666 less the umask), not ``mkstemp``'s private 0600.

    Raises:
        OSError: a write or the rename failed (a full disk, a quota, a lost mount), with the
            target's name as its ``filename``; the target is as it was before.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)  # fmt: skip
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename not in (None, tmp, str(path)):  # another file's error (an input's)
            raise
        reason = f"{err.strerror or err}; nothing was written there (an earlier file is kept)"
        raise OSError(err.errno, reason, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
