"""``vilab catalog fetch|convert|simulate``: every flag run once with its effect checked, and
the refusals (one line, exit 2, nothing written). ``fetch`` talks to a local server that
answers as the USGS service does (:mod:`tests.fdsn_service`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from inference.data import ParquetCatalog, load_catalog
from ppl_models.earthquake import simulate
from tests.fdsn_service import HEADER, usgs_rows, usgs_service
from tests.http_server import serving
from vilab.catalog.flags import count
from vilab.cli import build_parser, main
from vilab.earthquake.flags import hyperparameters

CSV = "Latitude,Longitude,Magnitude\n10,100,6.04\n40.5,140.25,5.55\n-5,140,7.1\n12,120,5.45\n"


def _run(*argv) -> None:
    assert main(["catalog", *argv]) == 0


def _fails(capsys, *argv) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["catalog", *argv])
    assert exc.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def csv(tmp_path) -> Path:
    path = tmp_path / "c.csv"
    path.write_text(CSV)
    return path


CASES = {}


def case(action, *flags):
    def register(check):
        CASES[(action, flags)] = check
        return check

    return register


@case("convert", "--lat-col", "--lon-col", "--mag-col")
def _(tmp_path, csv, capsys):
    other = tmp_path / "o.csv"
    other.write_text(CSV.replace("Latitude,Longitude,Magnitude", "y,x,m"))
    _run("convert", str(other), str(tmp_path / "o.parquet"), "--lat-col", "y", "--lon-col", "x",
         "--mag-col", "m", "--quiet")  # fmt: skip
    assert torch.equal(ParquetCatalog(tmp_path / "o.parquet").load().X, load_catalog(csv).X)


@case("convert", "--strength-scale")
def _(tmp_path, csv, capsys):
    # scale 1.3e15 puts magnitude 7.1 (only) beyond 2**53 = 9.007e15: refused at conversion
    err = _fails(capsys, "convert", str(csv), str(tmp_path / "c.parquet"),
                 "--strength-scale", "1.3e15")  # fmt: skip
    assert "line 4: magnitude '7.1' times strength scale 1.3e+15" in err
    assert not (tmp_path / "c.parquet").exists()


@case("convert", "--bbox")
def _(tmp_path, csv, capsys):
    _run("convert", str(csv), str(tmp_path / "c.parquet"), "--bbox", "0,50,100,150", "--quiet")
    assert pq.ParquetFile(tmp_path / "c.parquet").metadata.num_rows == 3


@case("convert", "--drop-invalid")
def _(tmp_path, csv, capsys):
    csv.write_text(CSV + "95,1,6\n")
    assert "1 invalid row(s)" in _fails(capsys, "convert", str(csv), str(tmp_path / "c.parquet"))
    _run("convert", str(csv), str(tmp_path / "c.parquet"), "--drop-invalid", "--quiet")
    assert pq.ParquetFile(tmp_path / "c.parquet").metadata.num_rows == 4


@case("convert", "--chunk-size")
@case("simulate", "--chunk-size")
def _(tmp_path, csv, capsys):
    _run("convert", str(csv), str(tmp_path / "c.parquet"), "--chunk-size", "3", "--quiet")
    assert pq.ParquetFile(tmp_path / "c.parquet").num_row_groups == 2
    _run("simulate", str(tmp_path / "s.parquet"), "--num-events", "50", "--chunk-size", "2e1")
    assert pq.ParquetFile(tmp_path / "s.parquet").num_row_groups == 3


@case("convert", "--json")
@case("simulate", "--json")
def _(tmp_path, csv, capsys):
    _run("convert", str(csv), str(tmp_path / "c.parquet"), "--json", str(tmp_path / "c.json"))
    assert json.loads((tmp_path / "c.json").read_text()) == {
        "action": "convert", "file": str(tmp_path / "c.parquet"), "num_rows": 4,
        "num_invalid": 0, "num_outside": 0, "num_written": 4,
    }  # fmt: skip
    _run("simulate", str(tmp_path / "s.parquet"), "--num-events", "5", "--seed", "3",
         "--json", str(tmp_path / "s.json"))  # fmt: skip
    summary = json.loads((tmp_path / "s.json").read_text())
    _, _, _, mu, lam = simulate(hyperparameters(_model_args()), 5, seed=3)
    assert summary["loc"] == mu.tolist() and summary["rate"] == lam.tolist()


def _model_args(*flags):
    parser = build_parser()
    return parser.parse_args(["catalog", "simulate", "x.parquet", *flags])


@case("convert", "--quiet")
@case("simulate", "--quiet")
def _(tmp_path, csv, capsys):
    for argv in (["convert", str(csv), str(tmp_path / "c.parquet")],
                 ["simulate", str(tmp_path / "s.parquet"), "--num-events", "50"]):  # fmt: skip
        capsys.readouterr()
        _run(*argv)
        assert "event" in capsys.readouterr().err  # tqdm's bar, unit "event"
        _run(*argv, "--quiet")
        assert capsys.readouterr().err == ""


@case("simulate", "--num-events", "--seed")
def _(tmp_path, csv, capsys):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        _run("simulate", str(tmp_path / f"{name}.parquet"), "--num-events", "1.2e2",
             "--seed", seed, "--quiet")  # fmt: skip
    a, b, c = (ParquetCatalog(tmp_path / f"{n}.parquet").load().X for n in "abc")
    assert a.shape == (120, 2) and torch.equal(a, b) and not torch.equal(a, c)


@case("simulate", "--dtype")
def _(tmp_path, csv, capsys):
    _run("simulate", str(tmp_path / "s.parquet"), "--num-events", "10", "--dtype", "float32")
    schema = pq.ParquetFile(tmp_path / "s.parquet").schema_arrow
    assert str(schema.field("x1").type) == "float" and str(schema.field("s").type) == "int64"


@case("simulate", "--k", "--mixing", "--tau", "--rho", "--nu", "--alpha", "--beta")
def _(tmp_path, csv, capsys):
    flags = ["--k", "3", "--mixing", "1,2,3", "--tau", "0.5", "--rho", "0.02", "--nu", "5,-5",
             "--alpha", "2.5", "--beta", "0.4"]  # fmt: skip
    _run("simulate", str(tmp_path / "s.parquet"), "--num-events", "3000", "--seed", "1",
         "--quiet", "--json", str(tmp_path / "s.json"), *flags)  # fmt: skip
    hp = hyperparameters(_model_args(*flags))
    assert (hp.num_clusters, hp.tau, hp.rho, hp.nu, hp.alpha, hp.beta) == (
        3, 0.5, 0.02, (5.0, -5.0), 2.5, 0.4)  # fmt: skip
    truth = json.loads((tmp_path / "s.json").read_text())
    X = ParquetCatalog(tmp_path / "s.parquet").load().X
    nearest = torch.cdist(X, torch.tensor(truth["loc"])).argmin(-1)
    # with tau = 0.5 (sd 1.4) the centres are far apart: the shares are the mixing weights
    # 1/6, 2/6, 3/6 within 4 binomial sd (at most 0.0365 at n = 3000)
    shares = torch.bincount(nearest, minlength=3) / 3000.0
    assert torch.allclose(shares, torch.tensor([1, 2, 3]) / 6.0, atol=4 * 0.0092)


@case("fetch", "--start", "--end", "--min-magnitude", "--bbox", "--url", "--page-size",
      "--retries", "--json", "--quiet")  # fmt: skip
def _(tmp_path, csv, capsys):
    """The query's flags reach the service as FDSN parameters; pages of --page-size; a page
    that fails once is tried again (--retries 1, the wait of 1 s); then `vilab earthquake
    --data` reads the file."""
    rows = usgs_rows(25)
    out, summary = tmp_path / "usgs.csv", tmp_path / "fetch.json"
    with serving(usgs_service(rows, failures={11: [503]})) as (base, seen):
        capsys.readouterr()
        _run("fetch", str(out), "--start", "2020-01-01", "--end", "2020-01-02T12:00:00",
             "--min-magnitude", "5.5", "--bbox", "-40,40,100,160", "--url", base,
             "--page-size", "10", "--retries", "1", "--json", str(summary), "--quiet")  # fmt: skip
    printed = capsys.readouterr()
    assert f"wrote 25 events to {out} (3 request(s) to {base})" in printed.out
    assert "it/s" not in printed.err and "event/s" not in printed.err
    queries = [q for path, q in seen if path.endswith("/query")]
    assert [q["offset"] for q in queries] == ["1", "11", "11", "21"]
    assert queries[0]["endtime"] == "2020-01-02T12:00:00" and queries[0]["minmagnitude"] == "5.5"
    assert (queries[0]["minlongitude"], queries[0]["maxlatitude"]) == ("100.0", "40.0")
    assert out.read_text().splitlines() == [HEADER, *rows]
    assert json.loads(summary.read_text())["num_events"] == 25
    assert main(["earthquake", "--data", str(out), "--k", "2", "--steps", "0", "--num-init", "1",
                 "--out", str(tmp_path / "fit"), "--quiet"]) == 0  # fmt: skip
    with serving(usgs_service([])) as (closed, _):
        pass
    err = _fails(capsys, "fetch", str(tmp_path / "x.csv"), "--start", "2020-01-01", "--end",
                 "2020-02-01", "--url", closed, "--retries", "0")  # fmt: skip
    assert err.startswith("vilab catalog: error: cannot reach the FDSN service at 127.0.0.1:")
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.csv").exists()


def _actions() -> dict:
    parser = build_parser()
    command = next(a for a in parser._actions if a.dest == "command").choices["catalog"]
    return next(a for a in command._actions if a.dest == "action").choices


@pytest.mark.parametrize("key", list(CASES), ids=[f"{a} {' '.join(f)}" for a, f in CASES])
def test_flag_has_its_effect(key, tmp_path, csv, capsys):
    CASES[key](tmp_path, csv, capsys)


@pytest.mark.parametrize("action", ["fetch", "convert", "simulate"])
def test_every_flag_is_exercised(action):
    flags = {max(a.option_strings, key=len) for a in _actions()[action]._actions
             if a.option_strings and a.dest != "help"}  # fmt: skip
    assert {f for (a, fs) in CASES if a == action for f in fs} == flags


def test_refusals_leave_nothing(tmp_path, csv, capsys):
    assert "OUT.parquet" in _fails(capsys, "convert", str(csv), str(tmp_path))
    assert "is the input IN.csv" in _fails(capsys, "convert", str(csv), str(csv))
    assert "does not exist" in _fails(capsys, "convert", str(tmp_path / "no.csv"),
                                      str(tmp_path / "o.parquet"))  # fmt: skip
    err = _fails(capsys, "simulate", str(tmp_path / "s.parquet"), "--num-events", "1.5")
    assert "expected an integer >= 1 (1e8 allowed), got '1.5'" in err
    assert "--tau must be a finite number > 0" in _fails(
        capsys, "simulate", str(tmp_path / "s.parquet"), "--tau", "0"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.csv"]


@pytest.mark.parametrize("text, value", [("1e8", 10**8), ("25", 25), ("2.5e1", 25)])
def test_count(text, value):
    assert count(text) == value
