"""The direction of imports: analytic is pure math and never pulls in Pyro."""

from __future__ import annotations

import subprocess
import sys


def test_analytic_never_imports_pyro():
    code = "import sys, analytic.earthquake; print('pyro' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_only_inference_diagnostics_imports_arviz():
    """ArviZ 1.x changes its API; the move must touch one file."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    importers = sorted(
        str(p.relative_to(root))
        for package in ("analytic", "ppl_models", "guides", "inference", "examples", "benchmarks")
        for p in (root / package).rglob("*.py")
        if "import arviz" in p.read_text() or "from arviz" in p.read_text()
    )
    assert importers == ["inference/diagnostics.py"]


def test_models_and_guides_never_import_inference():
    code = (
        "import sys, ppl_models, guides; "
        "print(any(m == 'inference' or m.startswith('inference.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_the_packages_does_not_load_arviz():
    """ArviZ is slow to import and prints a FutureWarning; only --diagnostics needs it."""
    code = "import sys, analytic, ppl_models, guides, inference.cli; print('arviz' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
