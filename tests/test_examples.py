"""Every example runs with tiny arguments and returns its metrics; none may go unlisted."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.idx_files import write_mnist_dir

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
BENCHMARKS_DIR = Path(__file__).resolve().parents[1] / "benchmarks"

# name -> tiny command-line arguments, or a function of a temporary folder returning them
EXAMPLES = {
    "did_it_work": lambda tmp: [
        "--data-dir",
        str(write_mnist_dir(tmp / "mnist", 40, 100)),
        "--num-events",
        "60",
        "--nuts-samples",
        "20",
        "--vae-epochs",
        "1",
        "--latent-dim",
        "3",
        "--hidden-dim",
        "16",
    ],  # fmt: skip
    "expgauss": ["--x", "2", "--steps", "50"],
    "reparam": ["--num-samples", "1000", "--steps", "20"],
    "ring_density": ["--num-train", "300", "--steps", "30"],
}


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_listed():
    assert sorted(p.stem for p in EXAMPLES_DIR.glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_small(name, capsys, tmp_path):
    module = _load(EXAMPLES_DIR / f"{name}.py")
    args = EXAMPLES[name](tmp_path) if callable(EXAMPLES[name]) else EXAMPLES[name]
    metrics = module.main(module.build_parser().parse_args(args))
    assert isinstance(metrics, dict) and metrics
    assert capsys.readouterr().out


def test_cavi_benchmark_runs_small(capsys):
    module = _load(BENCHMARKS_DIR / "earthquake_cavi.py")
    result = module.main(module.build_parser().parse_args(["--sizes", "500", "--iters", "30"]))
    row = result["rows"][0]
    assert row["n"] == 500 and row["sklearn_s"] > 0
    assert row["ratio"] == pytest.approx(row["ours_s"] / row["sklearn_s"])
    assert "ratio" in capsys.readouterr().out


def test_estimator_variance_benchmark_runs_small(capsys):
    module = _load(BENCHMARKS_DIR / "estimator_variance.py")
    args = ["--models", "expgauss", "vae", "--draws", "3", "--steps", "2", "--repeats", "1",
            "--batch-size", "4", "--vae-train-steps", "2"]  # fmt: skip
    result = module.main(module.build_parser().parse_args(args))
    assert [r["model"] for r in result["rows"]] == ["expgauss", "vae"]
    assert all(r["time_ratio"] > 0 for r in result["rows"])
    assert [r["guide"] for r in result["autoguides"]][0] == "AutoNormal"
    assert all(r["ratio"] > 0 for r in result["autoguides"])
    out = capsys.readouterr().out
    assert "STL / baseline" in out and "STL / Trace" in out


def test_vae_benchmark_runs_small(capsys, tmp_path):
    module = _load(BENCHMARKS_DIR / "vae.py")
    data = write_mnist_dir(tmp_path / "mnist", 40, 10)
    args = ["--data-dir", str(data), "--latent-dim", "3", "--hidden-dim", "16", "--quiet",
            "--estimators", "trace", "stl"]  # fmt: skip
    result = module.main(module.build_parser().parse_args(args))
    assert set(result) == {"plain", "plain, fused Adam", "trace", "stl"}
    assert result["stl"]["ratio"] > 0
    assert "vs plain" in capsys.readouterr().out


def test_ring_density_benchmark_runs_small(capsys):
    module = _load(BENCHMARKS_DIR / "ring_density.py")
    args = ["--n", "300", "--repeats", "1", "--check-every", "5", "--ebm-steps", "5"]
    result = module.main(module.build_parser().parse_args(args))
    assert result["kde"]["ratio"] == pytest.approx(
        result["kde"]["sklearn_s"] / result["kde"]["ours_s"]
    )
    assert result["kde"]["diff"] < 1e-9 and result["ebm"]["default_run_s"] > 0
    assert "ratio sklearn/ours" in capsys.readouterr().out


def test_svi_step_benchmark_runs_small(capsys):
    """Ours only (NumPyro is an optional benchmark dependency; Inductor's compile is timed in
    the benchmark itself): every estimator of the two cases compiles with TorchScript (the
    benchmark raises if one is left uncompiled) and is timed."""
    module = _load(BENCHMARKS_DIR / "svi_step.py")
    args = ["--cases", "earthquake-1k", "expgauss", "--steps", "2", "--repeats", "1",
            "--no-numpyro", "--backends", "torchscript"]  # fmt: skip
    result = module.main(module.build_parser().parse_args(args))
    assert set(result["earthquake-1k"]) == {"enum", "stl", "trace"}
    assert set(result["expgauss"]) == {"trace", "meanfield", "stl"}
    for by_name in result.values():
        for r in by_name.values():
            assert r["eager_ms"] > 0 and r["torchscript_ms"] > 0
            assert r["torchscript_compile_s"] > 0 and r["numpyro_ms"] is None
    assert "fastest / NumPyro" in capsys.readouterr().out


def test_auto_cavi_benchmark_runs_small(capsys):
    module = _load(BENCHMARKS_DIR / "auto_cavi.py")
    args = ["--sizes", "300", "--k", "3", "--sweeps", "2", "--repeats", "1", "--peer-n", "400"]
    result = module.main(module.build_parser().parse_args(args))
    row = result["rows"][0]
    assert row["n"] == 300 and row["ratio"] == pytest.approx(row["auto_s"] / row["hand_s"])
    assert [p["model"].split(",")[0] for p in result["bayespy"]] == [
        "linear regression", "full-covariance GMM", "LDA"
    ]  # fmt: skip
    assert all(p["ratio"] == pytest.approx(p["auto_s"] / p["bayespy_s"]) for p in result["bayespy"])
    out = capsys.readouterr().out
    assert "ratio auto/hand" in out and "ratio auto/BayesPy" in out
