"""The thread count on a shared machine: the cores other busy processes leave, and --threads."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from vilab import threads
from vilab.cli import main


@pytest.mark.parametrize("others, expected", [(0, 2), (1, 1), (2, 1), (7, 1), (None, 2)])
def test_threads_are_the_cores_others_leave_and_at_least_one(monkeypatch, others, expected):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(threads, "other_runnable_tasks", lambda: others)
    assert threads.choose_threads(default=2) == expected


def test_never_more_than_torchs_default(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(threads, "other_runnable_tasks", lambda: 1)
    assert threads.choose_threads(default=4) == 4


@pytest.mark.skipif(not os.path.exists("/proc/loadavg"), reason="reads Linux's /proc/loadavg")
def test_busy_processes_are_counted():
    """Two spinning processes in sessions of their own (as other users' jobs are) are seen:
    at least 2 others, whatever else the machine runs."""
    spin = "import time\nend = time.monotonic() + 30\nwhile time.monotonic() < end: pass"
    busy = [
        subprocess.Popen([sys.executable, "-c", spin], start_new_session=True) for _ in range(2)
    ]
    try:
        time.sleep(0.5)
        assert threads.other_runnable_tasks() >= 2
    finally:
        for p in busy:
            p.kill()
            p.wait()


def test_flag_sets_the_threads_for_the_run_and_main_restores_them(monkeypatch, tmp_path):
    seen = []
    from vilab.reparam import run as reparam_run

    real = reparam_run.run
    monkeypatch.setattr(reparam_run, "run", lambda args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        assert main(["reparam", "--threads", "1", "--out", str(tmp_path)]) == 0
    finally:
        monkeypatch.setattr(reparam_run, "run", real)
    assert seen == [1] and torch.get_num_threads() == before


def test_openmp_waits_passively_unless_the_user_says_otherwise():
    code = "import os, vilab; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"
