"""The direction of imports: analytic is pure math and never pulls in Pyro."""

from __future__ import annotations

import subprocess
import sys


def test_analytic_never_imports_pyro():
    code = "import sys, analytic.earthquake; print('pyro' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
