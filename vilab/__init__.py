"""The ``vilab`` application: the command line over the case studies.

``vilab/cli.py`` is the entry point; the flags, output writing, tables and device selection that
every subcommand shares are beside it (:mod:`vilab.flags`, :mod:`vilab.io`, :mod:`vilab.report`,
:mod:`vilab.devices`, :mod:`vilab.diagnostics`). Each case study is one subpackage:
``run.py`` (its flags and ``run(args) -> dict``), ``plots.py``, and the helpers only it uses.
The engine a Pyro user imports in their own scripts is :mod:`inference`; nothing there imports
this package.
"""

import os

# OpenMP worker threads that find no work sleep instead of spinning. With spinning (libgomp's
# default) a sweep that shares the cores with other busy processes waits at every barrier for
# a descheduled thread: one CAVI sweep at N = 2e5, K = 5 on 2 busy cores took 112 ms instead
# of 8.3 ms quiet; passive waiting gives 13.8 ms, the fair share, and costs ~5% when quiet
# (benchmarks/busy_machine.py). Set before torch is imported; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
