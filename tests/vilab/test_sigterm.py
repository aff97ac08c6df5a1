"""SIGTERM (a scheduler, ``kill``, the torchrun launcher stopping its workers) ends a command as
Ctrl-C does (issue #37): one line, no traceback, nothing half-written, and the shell's code for
it, 143 -- it used to exit without a word."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import vilab.expgauss.run
from vilab import cli


def test_sigterm_ends_a_run_with_one_line_and_code_143(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "vilab", "earthquake", "--num-events", "3000", "--steps",
            "1000000", "--num-init", "1", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "SVI" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
        time.sleep(1.0)  # in the middle of the SVI loop
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:  # never leave a process behind, whatever failed above
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    lines = [line for line in err.replace("\r", "\n").splitlines() if "vilab earthquake" in line]
    assert lines == ["vilab earthquake: terminated (SIGTERM)"], err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.parametrize("signum, code, words", [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                 (signal.SIGINT, 130, "interrupted")])  # fmt: skip
def test_a_signal_that_comes_back_as_another_exception_still_ends_as_one(
    monkeypatch, capsys, signum, code, words
):
    """The TorchScript interpreter re-raises an interrupt from a Python callback as a
    RuntimeError (the CI failure of this test's neighbour): the command still ends with the
    signal's one line and code, not a traceback or a 'RuntimeError' exit 1."""

    def run(args):
        try:
            signal.raise_signal(signum)
        except KeyboardInterrupt:
            raise RuntimeError("KeyboardInterrupt: <EMPTY MESSAGE>") from None

    monkeypatch.setattr(vilab.expgauss.run, "run", run)
    with pytest.raises(SystemExit) as stop:
        cli.main(["expgauss"])
    assert stop.value.code == code
    assert capsys.readouterr().err.strip() == f"vilab expgauss: {words}"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the caller's handlers are back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
