"""Start-up: `vilab --help` and every `vilab X --help` answer without importing torch, Pyro or
any plotting, data or scientific library (measured 0.2-0.4 s on 2 cores, against 3.6 s when
the parser was built from the run modules), and no package module imports matplotlib, ArviZ,
pyarrow, scipy or torchvision when it is imported: each is imported by the function that uses
it. Held by the modules Python reports as imported (``python -X importtime``), not by a clock,
so the test cannot pass on a fast machine and fail on a slow one."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from vilab.cli import _COMMANDS

#: What building the parser must not import: the engine (torch and everything on it) and the
#: libraries a command uses only when it runs.
NOT_FOR_THE_PARSER = (
    *("torch", "pyro", "numpy", "matplotlib", "arviz", "pyarrow", "scipy", "torchvision", "tqdm"),
    *("analytic", "inference", "guides", "ppl_models"),
)
#: What importing a package module must not import (each is imported where it is used).
IMPORTED_WHERE_USED = ("matplotlib", "arviz", "pyarrow", "scipy", "torchvision", "sklearn")


def _imported(code: str) -> set[str]:
    """The modules ``python -X importtime -c code`` imported (top-level and nested names)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return {m.group(1) for m in re.finditer(r"^import time:.*\|\s*([\w.]+)$", done.stderr, re.M)}


def _roots(modules: set[str], names) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


def test_the_importtime_parser_sees_a_heavy_import():
    """The check itself: importing torch is seen (a regex that matched nothing would pass)."""
    assert "torch" in _imported("import torch")


@pytest.mark.parametrize("command", [None, *_COMMANDS])
def test_help_imports_no_heavy_module(command):
    """``vilab --help`` and ``vilab X --help`` for every command, in a fresh interpreter."""
    argv = ["--help"] if command is None else [command, "--help"]
    code = f"import sys; from vilab.cli import main\ntry: main({argv!r})\nexcept SystemExit: pass"
    heavy = _roots(_imported(code), NOT_FOR_THE_PARSER)
    assert not heavy, f"vilab {' '.join(argv)} imported {heavy[:8]}"


#: Every package and the run module of every command.
MODULES = ["analytic", "ppl_models", "guides", "inference", "inference.data",
           "inference.diagnostics", *(run for _, run, _ in _COMMANDS.values())]  # fmt: skip


def test_modules_import_plotting_and_data_libraries_only_where_used():
    """Each module imported in turn in one interpreter; after each, which of the libraries
    it brought in (a module that imports one is named, even though the rest run after it)."""
    code = (
        "import importlib, sys\n"
        f"for name in {MODULES!r}:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(name)\n"
        "    new = sorted(m for m in set(sys.modules) - before\n"
        f"                 if m.split('.')[0] in {IMPORTED_WHERE_USED!r})\n"
        "    print(name, new[:6])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == MODULES
    offenders = [line for line in lines if not line.endswith(" []")]
    assert not offenders, offenders


def test_the_module_check_names_an_offender():
    """The check itself: a module that imports scipy at import time would be named."""
    code = "import sys, importlib; before = set(sys.modules); import scipy.stats; "
    code += "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] == 'scipy')[:1])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "['scipy']"


def test_values_the_parser_repeats_equal_the_engines():
    """What a flags module states without importing the engine (to stay light) is the
    engine's: the collective timeout, the FDSN service and its page cap, the gradvar test
    beds, the expgauss estimators."""
    from inference.data.fdsn import MAX_PAGE, USGS_FDSN
    from inference.distributed import DEFAULT_TIMEOUT
    from inference.estimators import ESTIMATORS
    from vilab.earthquake.flags import DEFAULT_TIMEOUT as FLAG_TIMEOUT
    from vilab.expgauss.flags import ESTIMATOR_CHOICES
    from vilab.gradvar.cases import ESTIMATORS_FOR, TRAIN_ESTIMATOR
    from vilab.gradvar.flags import CASES

    assert FLAG_TIMEOUT == DEFAULT_TIMEOUT
    assert set(CASES) == set(ESTIMATORS_FOR) == set(TRAIN_ESTIMATOR)
    assert set(ESTIMATOR_CHOICES) <= set(ESTIMATORS)
    import vilab.cli

    parser = vilab.cli.build_parser()
    catalog = next(a for a in parser._actions if a.dest == "command").choices["catalog"]
    fetch = next(a for a in catalog._actions if a.dest == "action").choices["fetch"]
    helps = " ".join(a.help or "" for a in fetch._actions)
    assert USGS_FDSN in helps and f"at most {MAX_PAGE}" in helps
