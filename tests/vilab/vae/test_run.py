"""``vilab vae`` end to end on generated MNIST files: table, files, resume, bad flags."""

from __future__ import annotations

import json

import pytest

from tests.idx_files import write_mnist_dir
from vilab.cli import main

TINY = ["--latent-dim", "3", "--hidden-dim", "16", "--batch-size", "20", "--iwae-samples", "5",
        "--quiet"]  # fmt: skip


@pytest.fixture
def data_dir(tmp_path):
    return str(write_mnist_dir(tmp_path / "mnist", num_train=60, num_test=20))


def test_cli_trains_evaluates_and_writes_every_file(tmp_path, data_dir, capsys):
    out, extra = tmp_path / "out", tmp_path / "copy.json"
    flags = ["--data-dir", data_dir, "--epochs", "2", "--out", str(out), "--json", str(extra)]
    assert main(["vae", *flags, *TINY]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.pt", "learning_curves.png", "reconstructions.png", "samples.png",
        "summary.json",
    ]  # fmt: skip
    s = json.loads(extra.read_text())
    assert [r["epoch"] for r in s["history"]] == [1, 2]
    assert s["config"]["estimator"] == "meanfield" and not s["data"]["md5_verified"]
    f = s["final"]  # E[L_k] >= ELBO (Burda et al. 2016, Thm 1): within 4 s.e. of the two means
    assert f["test_log_likelihood_iwae"] + f["test_nelbo"] > -4 * (
        f["test_log_likelihood_iwae_se"] + f["test_nelbo_se"]
    )
    printed = capsys.readouterr().out
    assert "test -ELBO" in printed and "IWAE k=5" in printed


def test_cli_resume_continues_to_the_same_result(tmp_path, data_dir):
    common = ["--data-dir", data_dir, "--estimator", "stl", *TINY]
    main(["vae", *common, "--epochs", "2", "--out", str(tmp_path / "a")])
    main(["vae", *common, "--epochs", "1", "--out", str(tmp_path / "b")])
    main(["vae", *common, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"])
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("a", "b"))
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert a["final"]["test_nelbo"] == b["final"]["test_nelbo"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--lr", "0"], "--lr must be a finite number > 0"),
        (["--resume"], "--resume: the checkpoint"),
        (["--data-dir", "/nonexistent"], "is not a folder"),
    ],
)
def test_cli_rejects_bad_flags_before_writing(tmp_path, data_dir, capsys, flags, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["vae", "--data-dir", data_dir, *TINY, *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_ctrl_c_exits_with_one_line_and_leaves_a_checkpoint_that_resumes(tmp_path, data_dir):
    """SIGINT in the middle of a long run (a real process, as a user's Ctrl-C): exit code 130,
    one line naming the checkpoint and its epoch, no traceback; the checkpoint loads with
    weights_only and --resume continues from it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from vilab.vae.checkpoint import load_checkpoint

    out = tmp_path / "out"
    flags = ["--data-dir", data_dir, *TINY, "--out", str(out)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A terminal's foreground process has SIGINT at its default. A job started in the background
    # of a non-interactive shell (as CI may start pytest) inherits SIGINT *ignored*, and Python
    # then installs no KeyboardInterrupt handler: restore the default in the child, as a shell
    # does for a foreground command, so the test does not depend on how it was launched.
    proc = subprocess.Popen(
        [sys.executable, "-m", "vilab", "vae", *flags, "--epochs", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        checkpoint = out / "checkpoint.pt"
        deadline = time.monotonic() + 120
        while not checkpoint.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(0.3)  # into a later epoch, possibly in the middle of the next write
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:  # never leave a training process behind, whatever failed above
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("vilab vae: interrupted in epoch ") and str(checkpoint) in lines[0]
    saved = int(lines[0].split("holds epoch ")[1].split(":")[0])
    state = load_checkpoint(checkpoint)
    assert len(state["history"]) == saved
    assert main(["vae", *flags, "--epochs", str(saved + 1), "--resume"]) == 0
    assert not list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(load_checkpoint(checkpoint)["history"]) == saved + 1
