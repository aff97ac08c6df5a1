"""The bad-input battery (issue #13): every class of bad input to the five commands gets one
clear error before any work -- exit code 2, one line on stderr that names the flag (or file)
and the offending value, no traceback, and nothing written under ``--out`` or ``--json``.

Each case is ``(id, argv, words)``: ``argv`` may hold ``{tmp}`` (a scratch folder with the
fixture files below) and ``{out}`` (the output folder, which must stay empty); every word of
``words`` must appear in the message. The count of cases is reported in the closing note of
#13; a new class of bad input found later belongs here.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.idx_files import write_mnist_dir
from vilab.cli import main

EQ = ["earthquake", "--num-events", "40", "--steps", "3", "--num-init", "1", "--quiet"]
EG = ["expgauss", "--steps", "3", "--quiet"]
VAE = ["vae", "--data-dir", "{tmp}/mnist", "--train-size", "20", "--test-size", "10",
       "--epochs", "1", "--latent-dim", "2", "--hidden-dim", "8", "--iwae-samples", "2",
       "--quiet"]  # fmt: skip
RP = ["reparam", "--num-samples", "100"]
GV = ["gradvar", "--model", "conjugate", "--steps", "4", "--every", "2", "--draws", "3",
      "--quiet"]  # fmt: skip
COMMANDS = {"earthquake": EQ, "expgauss": EG, "vae": VAE, "reparam": RP, "gradvar": GV}

CASES: list[tuple[str, list[str], list[str]]] = []
# -- flags every command shares: output paths and the seed ------------------------------------
for name, base in COMMANDS.items():
    CASES += [
        (f"{name}-seed-negative", [*base, "--seed", "-1"], ["--seed", "-1"]),
        (f"{name}-seed-too-large", [*base, "--seed", "4294967296"], ["--seed", "4294967296"]),
        (f"{name}-seed-not-a-number", [*base, "--seed", "x1"], ["--seed", "x1"]),
        (f"{name}-out-is-a-file", [*base, "--out", "{tmp}/a_file"], ["--out", "a_file"]),
        (f"{name}-out-under-a-file", [*base, "--out", "{tmp}/a_file/sub"], ["--out", "a_file"]),
        (f"{name}-out-not-writable", [*base, "--out", "/proc/vilab-out"], ["--out", "/proc"]),
        (f"{name}-json-is-a-folder", [*base, "--json", "{tmp}/a_folder"], ["--json", "a_folder"]),
        (
            f"{name}-json-under-a-file",
            [*base, "--json", "{tmp}/a_file/s.json"],
            ["--json", "a_file"],
        ),
        (f"{name}-json-not-writable", [*base, "--json", "/proc/s.json"], ["--json", "/proc"]),
        (f"{name}-device-unknown", [*base, "--device", "gpu0"], ["--device", "gpu0"]),
        (f"{name}-threads-zero", [*base, "--threads", "0"], ["--threads", "0"]),
        (f"{name}-threads-text", [*base, "--threads", "all"], ["--threads", "all"]),
    ]
# -- earthquake --------------------------------------------------------------------------------
CASES += [
    ("eq-data-missing", [*EQ, "--data", "{tmp}/none.csv"], ["none.csv", "does not exist"]),
    ("eq-data-folder", [*EQ, "--data", "{tmp}/a_folder"], ["a_folder", "folder"]),
    ("eq-data-binary", [*EQ, "--data", "{tmp}/binary.csv"], ["binary.csv", "UTF-8", "line"]),
    ("eq-data-latin1", [*EQ, "--data", "{tmp}/latin1.csv"], ["latin1.csv", "UTF-8", "line 3"]),
    ("eq-data-huge-cell", [*EQ, "--data", "{tmp}/hugecell.csv"], ["hugecell.csv", "line 2"]),
    ("eq-data-empty", [*EQ, "--data", "{tmp}/empty.csv"], ["empty.csv", "empty"]),
    ("eq-data-no-columns", [*EQ, "--data", "{tmp}/nocols.csv"], ["nocols.csv", "latitude"]),
    ("eq-data-bad-row", [*EQ, "--data", "{tmp}/badrow.csv"], ["badrow.csv", "line 3", "abc"]),
    (
        "eq-data-magnitude-overflow",
        [*EQ, "--data", "{tmp}/bigmag.csv", "--strength-scale", "10"],
        ["bigmag.csv", "line 3", "magnitude", "1e308"],
    ),
    (
        "eq-data-strength-too-large",
        [*EQ, "--data", "{tmp}/bigmag2.csv"],
        ["bigmag2.csv", "line 2", "magnitude", "1e20"],
    ),
    (
        "eq-bbox-empty",
        [*EQ, "--data", "{tmp}/good.csv", "--bbox", "-40,-10,-80,-60"],
        ["bbox", "-40"],
    ),
    ("eq-bbox-malformed", [*EQ, "--bbox", "1,2,3"], ["--bbox", "1,2,3"]),
    ("eq-bbox-order", [*EQ, "--bbox", "10,-10,0,5"], ["--bbox", "10,-10,0,5"]),
    ("eq-nu-malformed", [*EQ, "--nu", "1"], ["--nu", "'1'"]),
    ("eq-nu-infinite", [*EQ, "--nu", "inf,0"], ["--nu", "inf"]),
    ("eq-k-zero", [*EQ, "--k", "0"], ["--k", "0"]),
    ("eq-k-float", [*EQ, "--k", "2.5"], ["--k", "2.5"]),
    ("eq-tau-negative", [*EQ, "--tau", "-1"], ["--tau", "-1"]),
    ("eq-tau-nan", [*EQ, "--tau", "nan"], ["--tau", "nan"]),
    ("eq-rho-inf", [*EQ, "--rho", "inf"], ["--rho", "inf"]),
    ("eq-alpha-zero", [*EQ, "--alpha", "0"], ["--alpha", "0"]),
    ("eq-beta-text", [*EQ, "--beta", "abc"], ["--beta", "abc"]),
    ("eq-mixing-count", [*EQ, "--k", "3", "--mixing", "1,2"], ["--mixing", "3"]),
    ("eq-mixing-negative", [*EQ, "--mixing", "1,-2,3"], ["--mixing", "1,-2,3"]),
    ("eq-strength-scale-zero", [*EQ, "--strength-scale", "0"], ["--strength-scale", "0"]),
    (
        "eq-strength-scale-overflow",
        [*EQ, "--data", "{tmp}/good.csv", "--strength-scale", "1e308"],
        ["good.csv", "line 2", "magnitude", "1e+308"],
    ),
    ("eq-num-events-zero", [*EQ, "--num-events", "0"], ["--num-events", "0"]),
    ("eq-max-iter-zero", [*EQ, "--max-iter", "0"], ["--max-iter", "0"]),
    ("eq-num-init-zero", [*EQ, "--num-init", "0"], ["--num-init", "0"]),
    ("eq-tol-negative", [*EQ, "--tol", "-1"], ["--tol", "-1"]),
    ("eq-steps-negative", [*EQ, "--steps", "-1"], ["--steps", "-1"]),
    ("eq-chunk-size-csv", [*EQ, "--chunk-size", "10"], ["--chunk-size"]),
    (
        "eq-parquet-no-columns",
        [*EQ, "--steps", "0", "--data", "{tmp}/nocols.parquet", "--chunk-size", "2"],
        ["nocols.parquet", "latitude"],
    ),
    (
        "eq-parquet-nan-row",
        [*EQ, "--steps", "0", "--data", "{tmp}/nan.parquet", "--chunk-size", "2"],
        ["nan.parquet", "row 3", "x2 nan"],
    ),
    ("eq-batch-size-zero", [*EQ, "--cavi", "stochastic", "--batch-size", "0"], ["--batch-size"]),
    ("eq-passes-zero", [*EQ, "--cavi", "stochastic", "--passes", "0"], ["--passes", "0"]),
    ("eq-tau0-negative", [*EQ, "--cavi", "stochastic", "--tau0", "-1"], ["--tau0", "-1"]),
    ("eq-kappa-half", [*EQ, "--cavi", "stochastic", "--kappa", "0.5"], ["--kappa", "0.5"]),
    ("eq-eval-every-inf", [*EQ, "--cavi", "stochastic", "--eval-every", "inf"], ["--eval-every"]),
    ("eq-lr-zero", [*EQ, "--lr", "0"], ["--lr", "0"]),
    ("eq-lr-final-inf", [*EQ, "--lr-final", "inf"], ["--lr-final", "inf"]),
    ("eq-particles-zero", [*EQ, "--particles", "0"], ["--particles", "0"]),
    ("eq-subsample-zero", [*EQ, "--subsample-size", "0"], ["--subsample-size", "0"]),
    ("eq-subsample-too-large", [*EQ, "--subsample-size", "41"], ["--subsample-size", "41"]),
    ("eq-estimator-unknown", [*EQ, "--estimator", "best"], ["--estimator", "best"]),
    (
        "eq-psis-samples-zero",
        [*EQ, "--diagnostics", "--psis-samples", "0"],
        ["--psis-samples", "0"],
    ),
    ("eq-nuts-chains-zero", [*EQ, "--diagnostics", "--nuts-chains", "0"], ["--nuts-chains", "0"]),
    (
        "eq-lat-col-missing",
        [*EQ, "--data", "{tmp}/good.csv", "--lat-col", "Breite"],
        ["Breite", "good.csv"],
    ),
]
# -- expgauss ----------------------------------------------------------------------------------
CASES += [
    ("eg-x-negative", [*EG, "--x", "-1"], ["--x", "-1"]),
    ("eg-x-zero", [*EG, "--x", "0"], ["--x", "0"]),
    ("eg-x-nan", [*EG, "--x", "nan"], ["--x", "nan"]),
    ("eg-x-inf", [*EG, "--x", "inf"], ["--x", "inf"]),
    ("eg-x-overflow", [*EG, "--x", "1e300"], ["--x", "1e+300"]),
    ("eg-init-theta-zero", [*EG, "--init-theta", "0"], ["--init-theta", "0"]),
    ("eg-init-phi-negative", [*EG, "--init-phi", "-2"], ["--init-phi", "-2"]),
    ("eg-init-phi-tiny", [*EG, "--init-phi", "1e-300"], ["--init-phi", "1e-300"]),
    ("eg-steps-zero", [*EG, "--steps", "0"], ["--steps", "0"]),
    ("eg-particles-zero", [*EG, "--particles", "0"], ["--particles", "0"]),
    ("eg-lr-nan", [*EG, "--lr", "nan"], ["--lr", "nan"]),
    ("eg-estimator-unknown", [*EG, "--estimator", "enum"], ["--estimator", "enum"]),
    ("eg-psis-zero", [*EG, "--diagnostics", "--psis-samples", "0"], ["--psis-samples", "0"]),
]
# -- vae ---------------------------------------------------------------------------------------
CASES += [
    ("vae-data-dir-missing", [*VAE, "--data-dir", "{tmp}/nope"], ["--data-dir", "nope"]),
    ("vae-data-dir-file", [*VAE, "--data-dir", "{tmp}/a_file"], ["--data-dir", "a_file"]),
    ("vae-data-dir-empty", [*VAE, "--data-dir", "{tmp}/a_folder"], ["a_folder", "train-images"]),
    ("vae-data-dir-corrupt", [*VAE, "--data-dir", "{tmp}/corrupt"], ["corrupt", "train"]),
    (
        "vae-checkpoint-folder",
        [*VAE, "--checkpoint", "{tmp}/a_folder"],
        ["--checkpoint", "a_folder"],
    ),
    (
        "vae-checkpoint-under-file",
        [*VAE, "--checkpoint", "{tmp}/a_file/c.pt"],
        ["--checkpoint", "a_file"],
    ),
    (
        "vae-checkpoint-not-writable",
        [*VAE, "--checkpoint", "/proc/c.pt"],
        ["--checkpoint", "/proc"],
    ),
    (
        "vae-resume-missing",
        [*VAE, "--resume", "--checkpoint", "{tmp}/none.pt"],
        ["none.pt", "does not exist"],
    ),
    (
        "vae-resume-foreign",
        [*VAE, "--resume", "--checkpoint", "{tmp}/a_file"],
        ["a_file", "checkpoint"],
    ),
    ("vae-train-size-zero", [*VAE, "--train-size", "0"], ["--train-size", "0"]),
    ("vae-train-size-too-large", [*VAE, "--train-size", "1000"], ["--train-size", "1000"]),
    ("vae-batch-size-zero", [*VAE, "--batch-size", "0"], ["--batch-size", "0"]),
    ("vae-epochs-zero", [*VAE, "--epochs", "0"], ["--epochs", "0"]),
    ("vae-lr-negative", [*VAE, "--lr", "-1e-3"], ["--lr", "-0.001"]),
    ("vae-latent-zero", [*VAE, "--latent-dim", "0"], ["--latent-dim", "0"]),
    ("vae-binarize-unknown", [*VAE, "--binarize", "threshold"], ["--binarize", "threshold"]),
    ("vae-iwae-zero", [*VAE, "--iwae-samples", "0"], ["--iwae-samples", "0"]),
    ("vae-psis-images-zero", [*VAE, "--diagnostics", "--psis-images", "0"], ["--psis-images", "0"]),
]
# -- reparam -----------------------------------------------------------------------------------
CASES += [
    ("rp-num-samples-zero", [*RP, "--num-samples", "0"], ["--num-samples", "0"]),
    ("rp-rate-zero", [*RP, "--rate", "0"], ["--rate", "0"]),
    ("rp-rate-inf", [*RP, "--rate", "inf"], ["--rate", "inf"]),
    ("rp-probs-sum", [*RP, "--probs", "0.5,0.6"], ["--probs", "0.5, 0.6"]),
    ("rp-probs-negative", [*RP, "--probs", "-0.5,1.5"], ["--probs", "-0.5, 1.5"]),
    ("rp-probs-text", [*RP, "--probs", "a,b"], ["--probs", "a,b"]),
    ("rp-temperature-zero", [*RP, "--temperatures", "0"], ["--temperatures", "0"]),
    ("rp-temperature-nan", [*RP, "--temperatures", "nan"], ["--temperatures", "nan"]),
]
# -- numbers outside the range where the run means anything in float64 (issue #37): named by
# their flag and value, not by the consequence (non-finite simulated data, divergent SVI) ---
CASES += [
    ("eq-tau-underflow", [*EQ, "--tau", "1e-300"], ["--tau", "1e-300", "spread"]),
    ("eq-rho-overflow", [*EQ, "--rho", "1e300"], ["--rho", "1e+300"]),
    ("eq-alpha-huge", [*EQ, "--alpha", "1e300"], ["--alpha", "1e+300"]),
    ("eq-beta-tiny", [*EQ, "--beta", "1e-300"], ["--beta", "1e-300"]),
    ("eq-mean-rate-huge", [*EQ, "--alpha", "1e5", "--beta", "1e-5"],
     ["--alpha / --beta", "1e+10", "2**53"]),
    ("eq-nu-huge", [*EQ, "--nu", "1e200,1e200"], ["--nu", "1e+200"]),
    ("eq-lr-huge", [*EQ, "--lr", "1e30"], ["--lr", "1e+30", "Adam"]),
    ("eq-passes-endless", [*EQ, "--cavi", "stochastic", "--passes", "1e300"],
     ["--passes", "1e+300"]),
    ("eq-batch-beyond-n", [*EQ, "--cavi", "stochastic", "--batch-size", "41"],
     ["--batch-size", "40", "41"]),
    ("eq-num-events-beyond-memory", [*EQ, "--num-events", "10000000000000"],
     ["--num-events", "GiB", "vilab catalog simulate"]),
    ("eg-x-tiny", [*EG, "--x", "1e-300"], ["--x", "1e-300", "theta*"]),
    ("eg-x-huge", [*EG, "--x", "1e50"], ["--x", "1e+50"]),
    ("eg-init-phi-huge", [*EG, "--init-phi", "1e300"], ["--init-phi", "1e+300"]),
    ("eg-init-theta-tiny", [*EG, "--init-theta", "1e-300"], ["--init-theta", "1e-300"]),
    ("rp-rate-tiny", [*RP, "--rate", "1e-300"], ["--rate", "1e-300"]),
    ("rp-rate-huge", [*RP, "--rate", "1e300"], ["--rate", "1e+300"]),
    ("ring-radius-huge", ["ring", "--radius", "1e200"], ["--radius", "1e+200", "float64"]),
]  # fmt: skip
# -- gradvar -----------------------------------------------------------------------------------
CASES += [
    ("gv-model-unknown", [*GV, "--model", "ring"], ["--model", "ring"]),
    ("gv-estimator-unknown", [*GV, "--estimator", "best"], ["--estimator", "best"]),
    ("gv-draws-one", [*GV, "--draws", "1"], ["--draws", "1"]),
    ("gv-every-zero", [*GV, "--every", "0"], ["--every", "0"]),
    ("gv-steps-zero", [*GV, "--steps", "0"], ["--steps", "0"]),
    ("gv-lr-negative", [*GV, "--lr", "-1"], ["--lr", "-1"]),
    ("gv-particles-zero", [*GV, "--particles", "0"], ["--particles", "0"]),
    (
        "gv-train-estimator-unknown",
        [*GV, "--train-estimator", "best"],
        ["--train-estimator", "best"],
    ),
    (
        "gv-vae-data-dir-missing",
        [*GV, "--model", "vae", "--data-dir", "{tmp}/nope"],
        ["--data-dir", "nope"],
    ),
]


# -- an output that is an input: the same file, a symbolic link or a hard link of it -------------
OVERWRITES = [
    ("eq-json-is-the-data", [*EQ, "--data", "{tmp}/good.csv", "--json", "{tmp}/good.csv"],
     ["--json", "good.csv", "input --data"], "good.csv"),
    ("eq-json-is-a-hard-link-of-the-data",
     [*EQ, "--data", "{tmp}/good.csv", "--json", "{tmp}/hard.csv"],
     ["--json", "hard.csv", "input --data"], "good.csv"),
    ("eq-json-is-a-symlink-to-the-data",
     [*EQ, "--data", "{tmp}/link.csv", "--json", "{tmp}/good.csv"],
     ["--json", "good.csv", "input --data"], "good.csv"),
    ("vae-checkpoint-is-an-mnist-file",
     [*VAE, "--checkpoint", "{tmp}/mnist/t10k-labels-idx1-ubyte.gz"],
     ["--checkpoint", "t10k-labels-idx1-ubyte.gz", "input --data-dir"],
     "mnist/t10k-labels-idx1-ubyte.gz"),
    ("vae-json-is-an-mnist-file", [*VAE, "--json", "{tmp}/mnist/train-images-idx3-ubyte.gz"],
     ["--json", "train-images-idx3-ubyte.gz", "input --data-dir"],
     "mnist/train-images-idx3-ubyte.gz"),
    ("catalog-convert-out-is-the-csv",
     ["catalog", "convert", "{tmp}/good.csv", "{tmp}/good.csv", "--quiet"],
     ["OUT.parquet", "good.csv", "input IN.csv"], "good.csv"),
    ("catalog-convert-json-is-the-csv",
     ["catalog", "convert", "{tmp}/good.csv", "{tmp}/c.parquet", "--json", "{tmp}/link.csv"],
     ["--json", "link.csv", "input IN.csv"], "good.csv"),
]  # fmt: skip
CASES += [case[:3] for case in OVERWRITES if not case[0].startswith("catalog")]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The files the cases point at."""
    tmp = tmp_path_factory.mktemp("bad-input")
    (tmp / "a_file").write_text("not a folder and not a checkpoint\n")
    (tmp / "a_folder").mkdir()
    write_mnist_dir(tmp / "mnist", num_train=30, num_test=20)
    (tmp / "corrupt").mkdir()
    for name in os.listdir(tmp / "mnist"):
        (tmp / "corrupt" / name).write_bytes(gzip.compress(b"\x00\x00\x08\x03 truncated"))
    header = "latitude,longitude,magnitude\n"
    (tmp / "good.csv").write_text(header + "10,20,5.5\n11,21,6.0\n12,22,5.0\n")
    os.link(tmp / "good.csv", tmp / "hard.csv")
    (tmp / "link.csv").symlink_to(tmp / "good.csv")
    (tmp / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp / "latin1.csv").write_bytes(
        (header + "10,20,5.5\n11,21,6.0 Ă\n")
        .encode("latin-1", errors="replace")
        .replace(b"?", b"\xe9")
    )
    (tmp / "hugecell.csv").write_text(header + "1" * 200_000 + ",20,5.5\n")
    (tmp / "empty.csv").write_text("")
    (tmp / "nocols.csv").write_text("a,b,c\n1,2,3\n")
    (tmp / "badrow.csv").write_text(header + "10,20,5.5\n10,abc,5.5\n")
    (tmp / "bigmag.csv").write_text(header + "10,20,5.5\n10,20,1e308\n")
    (tmp / "bigmag2.csv").write_text(header + "10,20,1e20\n10,20,5.5\n")
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3.0, 4.0]}), tmp / "nocols.parquet")
    planar = {"x1": [1.0, 2.0, 3.0, 4.0], "x2": [1.0, 2.0, 3.0, float("nan")], "s": [1, 2, 3, 4]}
    pq.write_table(pa.table(planar), tmp / "nan.parquet", row_group_size=2)
    return tmp


def _fill(argv: list[str], tmp: Path, out: Path) -> list[str]:
    return [a.replace("{tmp}", str(tmp)).replace("{out}", str(out)) for a in argv]


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("argv, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_error_and_no_output(argv, words, scratch, tmp_path, capsys):
    out = tmp_path / "out"
    argv = _fill(argv, scratch, out)
    if "--out" not in argv:
        argv += ["--out", str(out)]
    if "--json" not in argv:
        argv += ["--json", str(tmp_path / "copy.json")]
    before = _files_under(scratch)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    message = err.strip().splitlines()[-1]
    for word in words:
        assert word in message, message
    assert "Traceback" not in err
    assert not out.exists() or not _files_under(out)
    assert not (tmp_path / "copy.json").exists()
    assert _files_under(scratch) == before  # nothing written beside the inputs either


@pytest.mark.parametrize(
    "argv, words, input_file", [c[1:] for c in OVERWRITES], ids=[c[0] for c in OVERWRITES]
)
def test_an_output_never_replaces_an_input(argv, words, input_file, scratch, capsys):
    """Refused before any work with one line naming both flags, and the input's bytes are
    untouched (before the check, `--json catalog.csv` replaced the catalog and exited 0)."""
    before = (scratch / input_file).read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(_fill(argv, scratch, scratch / "out"))
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2
    assert all(word in message for word in words), message
    assert (scratch / input_file).read_bytes() == before
