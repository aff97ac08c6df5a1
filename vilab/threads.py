"""How many CPU threads torch may use: what the other busy processes leave free.

torch starts one intra-op thread per core. When other CPU-bound processes hold some of the
cores, those threads no longer run at once and every parallel region waits for the slowest
one: one CAVI sweep (N = 2e5, K = 5) beside two busy processes on a 2-core machine took 112 ms
instead of 8.3 ms quiet with 2 threads, and 11.8 ms with 1 (benchmarks/busy_machine.py).
So ``vilab`` counts the tasks that are runnable right now besides itself (the fourth field of
``/proc/loadavg``, median of 5 reads 10 ms apart, so that a passing ``ls`` does not count) and
uses the cores they leave, at least 1. ``--threads N`` overrides the choice.
"""

from __future__ import annotations

import os
import statistics
import time

__all__ = ["choose_threads", "other_runnable_tasks"]


def other_runnable_tasks(samples: int = 5, interval: float = 0.01) -> int | None:
    """Tasks runnable now besides this process (median over ``samples`` reads of
    ``/proc/loadavg``), or None where that file does not exist (not Linux)."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg", encoding="ascii") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        counts.append(max(0, running - 1))  # the reading process is running too
        if i + 1 < samples:
            time.sleep(interval)
    return int(statistics.median_low(counts))


def choose_threads(default: int) -> int:
    """The threads to use: ``default`` (torch's choice) less the cores other runnable tasks
    hold, at least 1; ``default`` itself where the load cannot be read."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    others = other_runnable_tasks()
    if others is None:
        return default
    return max(1, min(default, cores - others))
