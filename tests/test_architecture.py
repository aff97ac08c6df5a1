"""The direction of imports (docs/design.md, "Layout"):

    analytic <- ppl_models <- guides <- inference <- vilab <- examples, benchmarks

and, inside the engine, the order of its rooms (``ROOMS``), read from every module's own import
statements (top level or inside functions), checked again by importing the engine in a fresh
interpreter. No import cycle between modules anywhere; no private name imported across a module
border. ``inference`` is what a user's Pyro script imports: it never imports the ``vilab``
application or ``argparse``, and prints nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
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
# the engine's rooms -> the rooms each may import (besides itself); the face inference/__init__.py
# may import them all. stl <- jit <- estimators: the generic compile code sits below the registry.
ROOMS = {
    "options": set(),
    "distributed": set(),
    "stl": {"options"},
    "jit": {"stl"},
    "estimators": {"options", "stl", "jit"},
    "svi": {"distributed"},
    "cavi": {"distributed"},
    "data": set(),
    "density": set(),
    "diagnostics": set(),
}


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


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph(root: Path, packages) -> dict[str, set[str]]:
    """module -> the modules of ours it imports. ``from P import name`` is an arrow to the
    module ``P.name`` where there is one (a submodule), else to ``P``."""
    paths = {
        _module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))
    }
    graph = {}
    for name, path in paths.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name in paths)
            elif isinstance(node, ast.ImportFrom) and node.module in paths and node.level == 0:
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in paths else node.module)
        graph[name] = targets - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _room(module: str) -> str | None:
    """The room of an engine module (``inference.jit.pairs`` -> ``jit``); None for the face."""
    parts = module.split(".")
    return parts[1] if parts[0] == "inference" and len(parts) > 1 else None


def _room_violations(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if (room := _room(module)) is not None
        for target in sorted(targets)
        if (other := _room(target)) is not None and other != room and other not in ROOMS[room]
    ]


def _private_imports(path: Path, root: Path = ROOT) -> list[str]:
    """Private names of our modules that ``path`` imports (``from m import _name``)."""
    return [
        f"{path.relative_to(root)}:{node.lineno} imports {node.module}.{alias.name}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
        and node.module.split(".")[0] in OURS
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]  # fmt: skip


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
    """Parsing flags, printing tables and choosing matplotlib's backend belong to the
    application (a notebook user's figures must stay inline)."""
    offending = []
    for path in _modules("inference"):
        if "argparse" in _imports(path):
            offending.append(f"{path.relative_to(ROOT)} imports argparse")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno} prints")
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "matplotlib.use":
                offending.append(f"{path.relative_to(ROOT)}:{node.lineno} sets the backend")
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
        "inference.svi, inference.jit, inference.stl, inference.cavi, inference.data, "
        "inference.density, inference.distributed; "
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


def test_only_one_diagnostics_module_imports_arviz():
    """ArviZ 1.x changes its API; the move must touch one file."""
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in ALLOWED
        for path in _modules(package)
        if "arviz" in {name.split(".")[0] for name in _imports(path)}
    )
    assert importers == ["inference/diagnostics/common.py"]


def test_every_engine_module_lives_in_a_room():
    """A new top-level engine module must be given a place in the room order."""
    rooms = {_room(_module_name(p)) for p in _modules("inference")} - {None}
    assert rooms == set(ROOMS)


def test_the_rooms_of_the_engine_import_only_the_rooms_below_them():
    assert _room_violations(_graph(ROOT, sorted(OURS))) == []


def test_no_module_anywhere_is_part_of_an_import_cycle():
    """Cycles through imports inside functions included (the kind that hid compiled <->
    estimators)."""
    assert _cycles(_graph(ROOT, sorted(OURS))) == []


def test_no_private_name_crosses_a_module_border():
    """What two modules share is public in one of them (the application, examples and
    benchmarks included; tests may reach into the module they test)."""
    offending = [
        found for package in ALLOWED for path in _modules(package)
        for found in _private_imports(path)
    ]  # fmt: skip
    assert offending == []


def test_the_planted_cycle_room_breach_and_private_import_are_caught(tmp_path):
    """The checks above can fail: a two-module cycle through a function-level import, an
    upward arrow from stl to the estimator registry, and a private import are all reported."""
    pkg = tmp_path / "inference"
    (pkg / "stl").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stl" / "__init__.py").write_text("")
    (pkg / "stl" / "guide.py").write_text("def f():\n    from inference.estimators import g\n")
    (pkg / "estimators.py").write_text("from inference.stl import guide\nfrom analytic import _y\n")
    graph = _graph(tmp_path, ["inference"])
    assert _cycles(graph) == [["inference.estimators", "inference.stl.guide"]]
    assert _room_violations(graph) == ["inference.stl.guide imports inference.estimators"]
    assert _private_imports(pkg / "estimators.py", tmp_path) == [
        "inference/estimators.py:2 imports analytic._y"
    ]


def test_every_package_is_typed_and_the_engine_has_a_version():
    """PEP 561 markers ship with each package; ``inference.__version__`` is the distribution's."""
    from importlib.metadata import version

    import inference

    assert all((ROOT / package / "py.typed").is_file() for package in ALLOWED if package not in
               ("examples", "benchmarks"))  # fmt: skip
    assert inference.__version__ == version("pyro-vi-lab")


def test_vilab_version_prints_the_distributions_version():
    from importlib.metadata import version

    out = subprocess.run([sys.executable, "-m", "vilab", "--version"], capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == f"vilab {version('pyro-vi-lab')}"


def test_every_public_function_and_class_of_the_library_has_a_docstring():
    """What a module shares is public with a docstring (the API pages render them)."""
    missing = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
        for package in ("analytic", "ppl_models", "guides", "inference")
        for path in _modules(package)
        for node in ast.parse(path.read_text()).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
        and not node.name.startswith("_")
        and ast.get_docstring(node) is None
    ]
    assert missing == []
