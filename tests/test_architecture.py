"""The direction of imports (DESIGN.md §1):

    analytic <- ppl_models <- guides <- inference <- vilab <- examples, benchmarks

read from every module's own import statements, and checked again by importing the engine in a
fresh interpreter. ``inference`` is what a user's Pyro script imports: it never imports the
``vilab`` application or ``argparse``, and prints nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> the packages of ours it may import (besides itself)
ALLOWED = {
    "analytic": set(),
    "ppl_models": {"analytic"},
    "guides": {"analytic", "ppl_models"},
    "inference": {"analytic", "ppl_models", "guides"},
    "vilab": {"analytic", "ppl_models", "guides", "inference"},
    "examples": {"analytic", "ppl_models", "guides", "inference", "vilab"},
    "benchmarks": {"analytic", "ppl_models", "guides", "inference", "vilab"},
}
OURS = set(ALLOWED) | {"tests"}


def _imports(path: Path) -> set[str]:
    """Every module named by an import statement of ``path`` (top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    offending = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in _modules(package)
        for name in _imports(path)
        if (top := name.split(".")[0]) in OURS and top != package and top not in ALLOWED[package]
    ]
    assert offending == []


def test_the_engine_never_imports_argparse_and_never_prints():
    """Parsing flags and printing tables belong to the application."""
    offending = []
    for path in _modules("inference"):
        if "argparse" in _imports(path):
            offending.append(f"{path.relative_to(ROOT)} imports argparse")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno} prints")
    assert offending == []


def test_the_planted_violation_is_caught(tmp_path):
    """The static check reads imports inside functions too (a check that can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from vilab.io import save_figure\n    import argparse\n")
    assert {"vilab.io", "argparse"} <= _imports(bad)


def test_importing_the_engine_loads_neither_the_application_nor_arviz():
    """ArviZ is slow to import and prints a FutureWarning; only --diagnostics needs it."""
    code = (
        "import sys, analytic, ppl_models, guides, inference, inference.estimators, "
        "inference.fit, inference.gradvar, inference.catalog, inference.mnist; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'vilab', 'arviz'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_line_does_not_load_arviz_until_asked():
    code = "import sys, vilab.cli; vilab.cli.build_parser(); print('arviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_analytic_never_imports_pyro():
    code = "import sys, analytic.earthquake; print('pyro' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_inference_diagnostics_imports_arviz():
    """ArviZ 1.x changes its API; the move must touch one file."""
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in _modules(package)
        if "arviz" in {name.split(".")[0] for name in _imports(path)}
    )
    assert importers == ["inference/diagnostics.py"]


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("inference", "VAEConfig", "vilab.vae.train"),
        ("inference", "train_vae", "vilab.vae.train"),
        ("inference.vae_train", "train_vae", "vilab.vae.train"),
        ("inference.vae_eval", "importance_weighted_bound", "vilab.vae.evaluate"),
        ("inference.expgauss_svi", "fit_expgauss", "vilab.expgauss.svi"),
        ("inference.data", "load_catalog", "inference.catalog"),
    ],
)
def test_moved_names_still_work_from_their_old_path_with_a_deprecation_warning(old, name, new):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"{old}.{name} has moved to {new}.{name}"):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_an_unknown_name_on_an_old_path_is_a_plain_attribute_error():
    import inference.vae_train

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="has no attribute 'nope'"):
            inference.vae_train.nope  # noqa: B018
