"""The documentation says what the code does: every Python block of the README and the site's
pages runs, every shell command in them is one the tools accept, every public name has an API
entry, links between pages resolve, and ``--help`` reads as help (no reST markup, no path
outside the repository). The tutorials are executed by the site build itself."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from vilab.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md"] + sorted(
    p for p in DOCS.rglob("*.md") if not {"_build", "tutorials", "jupyter_execute"} & set(p.parts)
)
# commands shown for completeness that the checks below do not parse: installers and tools
NOT_OURS = ("pip", "pytest", "sphinx-build", "mutmut", "OMP_NUM_THREADS=1", "apt-get")


def _blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", path.read_text(), re.S | re.M)


def _commands(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [c for line in lines if (c := re.sub(r"(^|\s)#.*$", "", line).strip())]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _blocks(p, "python")], ids=_page_id
)  # fmt: skip
def test_every_python_block_of_a_page_runs(page):
    """The page's blocks run in order, in one fresh interpreter, as a reader would paste them."""
    code = "\n\n".join(_blocks(page, "python"))
    env = {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _parse_vilab(argv: list[str]) -> None:
    """Parse ``vilab ...`` with the real parser; a flag or value it refuses fails the test."""
    parser = build_parser()
    parser.exit_on_error = False
    for action in parser._subparsers._group_actions[0].choices.values():  # noqa: SLF001
        action.exit_on_error = False
    if argv in (["--version"], ["--help"]):
        return
    parser.parse_args(argv)


def _script_parser(path: Path) -> argparse.ArgumentParser:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def _check_command(command: str) -> None:
    words = shlex.split(command)
    module = None
    if words[0] == "torchrun":  # torchrun [its flags] -m MODULE ...
        module, words = words[words.index("-m") + 1], words[words.index("-m") + 1 :]
    elif words[:2] == ["python", "-m"]:
        module, words = words[2], words[2:]
    if words[0] == "vilab":
        _parse_vilab(words[1:])
    elif module is not None:
        importlib.import_module(module)
    elif words[0] == "python":
        script = ROOT / words[1]
        assert script.is_file(), f"{words[1]} does not exist"
        _script_parser(script).parse_args(words[2:])
    else:
        assert words[0] in NOT_OURS, f"unknown command {words[0]!r}: check it here"


@pytest.mark.parametrize(
    "page", [p for p in PAGES if _blocks(p, "bash")], ids=_page_id
)  # fmt: skip
def test_every_shell_command_of_a_page_is_accepted(page, monkeypatch, capsys):
    """``vilab`` commands parse with the real parser (every flag exists, every value is
    accepted), scripts exist and accept their flags, ``python -m`` modules import."""
    monkeypatch.chdir(ROOT)
    for block in _blocks(page, "bash"):
        for command in _commands(block):
            try:
                _check_command(command)
            except SystemExit as stop:  # argparse's own exit on a bad value
                pytest.fail(f"{page.name}: {command!r} is refused ({stop})")


def test_a_wrong_command_in_a_page_would_be_caught():
    """The check above can fail: an unknown flag, a bad value, a missing script."""
    for command in (
        "vilab earthquake --no-such-flag",
        "vilab ring --radius abc",
        "python benchmarks/no_such_script.py",
        "make install",
    ):
        with pytest.raises((SystemExit, AssertionError, argparse.ArgumentError)):
            _check_command(command)


def _public_names() -> dict[str, list[str]]:
    """module -> the public names it defines (its ``__all__``, or its own top-level defs)."""
    found = {}
    for package in ("analytic", "ppl_models", "guides", "inference"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if info.ispkg or any(part.startswith("_") for part in info.name.split(".")):
                continue
            module = importlib.import_module(info.name)
            source = Path(module.__file__).read_text()
            defined = set(re.findall(r"^(?:def|class) (\w+)|^(\w+)\s*[:=]", source, re.M))
            defined = {a or b for a, b in defined}
            names = getattr(module, "__all__", [n for n in defined if not n.startswith("_")])
            found[info.name] = sorted(n for n in names if n in defined)
    return found


def test_every_public_name_has_one_api_entry():
    documented = {}
    for page in sorted((DOCS / "api").glob("*.md")):
        for module, members in re.findall(
            r"\.\. automodule:: (\S+)\n\s+:members: ([^\n]+)", page.read_text()
        ):
            documented[module] = sorted(m.strip() for m in members.split(","))
    public = {module: names for module, names in _public_names().items() if names}
    assert documented == public


def test_links_between_pages_resolve():
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{_page_id(page)} -> {target}")
    assert broken == []


def _help_texts() -> dict[str, str]:
    texts = {"vilab": build_parser().format_help()}
    subparsers = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name, parser in subparsers.items():
        texts[name] = parser.format_help()
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
        for group in nested:
            for sub, subparser in group.choices.items():
                texts[f"{name} {sub}"] = subparser.format_help()
    return texts


MARKUP = re.compile(r"``|:(?:func|class|mod|meth|attr|data|exc):`|\.\./shared|seeds/\d")


@pytest.mark.parametrize("command", sorted(_help_texts()))
def test_help_reads_as_help(command):
    found = MARKUP.findall(_help_texts()[command])
    assert found == [], f"vilab {command} --help shows {found}"


def test_the_help_check_catches_markup():
    assert MARKUP.findall("see :func:`analytic.elbo` and ``x`` in ../shared/seeds/003") == [
        ":func:`", "``", "``", "../shared", "seeds/0",
    ]  # fmt: skip


def test_the_readme_is_one_screen():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200
