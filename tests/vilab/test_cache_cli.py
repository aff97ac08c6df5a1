"""``vilab cache``: where a command's compiled steps are kept (TorchInductor's on-disk caches),
its size, and ``--clear``; the folder is what a command actually compiles into; a folder the
user chose through TORCHINDUCTOR_CACHE_DIR is reported but never deleted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vilab.cache import cache_dir, inductor_dir, using_the_cache
from vilab.cli import build_parser, main


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """vilab's cache folder under tmp_path, no TORCHINDUCTOR_CACHE_DIR of the user's."""
    monkeypatch.setenv("VILAB_CACHE_DIR", str(tmp_path / "vilab"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    return tmp_path / "vilab"


def _fill(folder: Path, sizes=(1000, 24)) -> None:
    (folder / "fxgraph" / "ab").mkdir(parents=True)
    for i, size in enumerate(sizes):
        (folder / "fxgraph" / "ab" / f"entry{i}").write_bytes(b"x" * size)


def test_the_folder_follows_the_documented_order(tmp_path, monkeypatch):
    """$VILAB_CACHE_DIR, else $XDG_CACHE_HOME/vilab, else ~/.cache/vilab; /inductor below;
    TORCHINDUCTOR_CACHE_DIR wins for Inductor's folder."""
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("VILAB_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "vilab"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "vilab"
    monkeypatch.setenv("VILAB_CACHE_DIR", str(tmp_path / "v"))
    assert inductor_dir() == tmp_path / "v" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "t"))
    assert inductor_dir() == tmp_path / "t"


def test_shows_the_size_and_clears_vilabs_folder(home, tmp_path, capsys):
    """--json: the summary, strict JSON; the sizes are those of the files put there."""
    _fill(home / "inductor")
    assert main(["cache", "--json", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary == {"folder": str(home / "inductor"), "set_by": "vilab", "bytes": 1024,
                       "files": 2, "cleared": False}  # fmt: skip
    assert f"{home / 'inductor'}: holds 0.0 MiB in 2 files" in capsys.readouterr().out
    assert main(["cache", "--clear"]) == 0
    assert not (home / "inductor").exists()
    assert "cleared 0.0 MiB in 2 files" in capsys.readouterr().out
    assert main(["cache", "--clear"]) == 0  # nothing there: nothing to do, no error


def test_a_folder_the_user_chose_is_shown_but_never_cleared(home, tmp_path, monkeypatch, capsys):
    mine = tmp_path / "my-inductor"
    _fill(mine, sizes=(10,))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(mine))
    assert main(["cache"]) == 0
    assert f"{mine}: holds 0.0 MiB in 1 files" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["cache", "--clear"])
    assert exc.value.code == 2 and (mine / "fxgraph" / "ab" / "entry0").exists()
    err = capsys.readouterr().err
    assert err.startswith("vilab cache: error: TORCHINDUCTOR_CACHE_DIR=") and "yours" in err


def test_a_command_compiles_into_the_folder_and_leaves_the_environment_as_it_was(home):
    """Within a command TORCHINDUCTOR_CACHE_DIR names vilab's folder (so Inductor writes
    there); after it, the variable is as before (unset, or the caller's own value)."""
    with using_the_cache() as folder:
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(folder) == str(home / "inductor")
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ


@pytest.mark.slow
def test_a_whole_step_run_fills_the_cache_and_the_next_run_reads_it(home, tmp_path):
    """A real compile (`--jit-backend step`, about 20 s cold): files appear in vilab's folder;
    the same run again hits Inductor's FX graph cache and misses nothing (its counters)."""
    argv = ["earthquake", "--num-events", "40", "--k", "2", "--steps", "3", "--quiet",
            "--jit-backend", "step", "--out", str(tmp_path / "a")]  # fmt: skip
    assert main(argv) == 0
    files = sum(len(f) for _, _, f in os.walk(home / "inductor"))
    assert files > 0
    from torch._dynamo.utils import counters

    counters.clear()
    assert main([*argv[:-1], str(tmp_path / "b")]) == 0
    assert counters["inductor"]["fxgraph_cache_hit"] >= 1
    assert counters["inductor"]["fxgraph_cache_miss"] == 0  # nothing compiled afresh


def test_every_flag_is_exercised():
    parser = build_parser()
    command = next(a for a in parser._actions if a.dest == "command").choices["cache"]
    flags = {max(a.option_strings, key=len) for a in command._actions if a.dest != "help"}
    assert flags == {"--clear", "--json"}  # each run above
