"""The ``vilab`` application: the command line over the case studies.

``vilab/cli.py`` is the entry point; the flags, output writing, tables and device selection that
every subcommand shares are beside it (:mod:`vilab.flags`, :mod:`vilab.io`, :mod:`vilab.report`,
:mod:`vilab.devices`, :mod:`vilab.diagnostics`). Each case study is one subpackage:
``run.py`` (its flags and ``run(args) -> dict``), ``plots.py``, and the helpers only it uses.
The engine a Pyro user imports in their own scripts is :mod:`inference`; nothing there imports
this package.
"""
