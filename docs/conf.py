"""Sphinx configuration of the pyro-vi-lab site: Markdown pages (MyST), tutorials as MyST
notebooks executed at every build (myst-nb), the API reference from the docstrings (autodoc,
Google-style sections by napoleon), math by a MathJax copy installed with the docs extras
(sphinx-mathjax-offline: nothing is fetched when a page is viewed).

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (warnings are errors).
"""

from __future__ import annotations

import os
import re
import sys
from importlib.metadata import version as _version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tutorials on a busy 2-core machine

project = "pyro-vi-lab"
author = "pyro-vi-lab developers"
release = _version("pyro-vi-lab")
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
]
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "mutation_*.txt", "jupyter_execute"]
source_suffix = {".md": "myst-nb", ".rst": "restructuredtext"}

# MyST: $...$ and $$...$$ math, ::: fences, heading anchors for links like page.md#section
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# tutorials: executed at every build, a failing cell fails the build
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 600
nb_execution_show_tb = True
nb_output_stderr = "remove"  # tqdm.auto's notice that ipywidgets is absent, in every notebook

# the API reference
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "description"
autodoc_preserve_defaults = True
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
napoleon_use_ivar = True  # "Attributes:" as fields: NamedTuple fields are not described twice
add_module_names = False
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"pyro-vi-lab {release}"
html_static_path: list[str] = []
html_show_sourcelink = False


# Docstrings write formulas as plain text that reads well in help(): |x|^2, a * b, tol * |ELBO|.
# In reST, |x| is a substitution and a lone * starts emphasis; outside literal blocks and ``code``
# they are escaped here, so that the API pages show the formula as written.
_LITERAL = re.compile(r"(``.*?``|:[a-z]+:`[^`]*`)")
_LONE_STAR = re.compile(
    r"(?<=[\s(\[])\*(?=[\s(\d])|(?<=\w)\*(?=\w)|(?<=\w)\*\*(?=[\w(])"
    r"|(?<![\w*\\])\*{1,2}(?=\w+(?![\w*]))"  # *args, **kwargs, (*S, ...): not emphasis
)


def _escape_formulas(app, what, name, obj, options, lines) -> None:
    literal_indent = None
    for i, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if stripped and indent <= literal_indent:
                literal_indent = None
            else:
                continue
        parts = _LITERAL.split(line)
        for j in range(0, len(parts), 2):
            parts[j] = _LONE_STAR.sub(
                lambda m: m.group(0).replace("*", "\\*"), parts[j].replace("|", "\\|")
            )
        lines[i] = "".join(parts)
        if stripped.endswith("::"):
            literal_indent = indent


def setup(app) -> None:
    app.connect("autodoc-process-docstring", _escape_formulas)
