"""Data-parallel CAVI on torch.distributed: two processes on gloo (localhost, launched by
torchrun as a user would) against one process, and a failure on one rank stopping both."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analytic.earthquake import Hyperparameters
from inference.data import simulate_parquet
from inference.distributed import Collective, launched
from vilab.cli import main

HP = Hyperparameters(3, tau=0.02, rho=1e-3)
FIT = ["--k", "3", "--steps", "0", "--chunk-size", "150", "--num-init", "2", "--seed", "4",
       "--quiet"]  # fmt: skip


def _vilab(tmp_path, nproc: int, *argv: str, timeout=120) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node nproc -m vilab ...`` (nproc 1: plain
    ``python -m vilab``), one thread per process as torchrun would set."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    command = [sys.executable, *(launcher if nproc > 1 else []), "-m", "vilab", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    # 7 row groups of 300: rank 0 reads 4 of them, rank 1 reads 3 (unequal shares)
    simulate_parquet(folder / "c.parquet", HP, 2000, seed=5, chunk_size=300)
    return folder


def test_one_process_collective_is_the_identity():
    assert not launched()
    group = Collective(0, 1, None)
    assert group.gather("x") == ["x"]
    assert group.agree(lambda: 3) == 3
    with pytest.raises(ValueError, match="no such"):
        group.agree(lambda: (_ for _ in ()).throw(OSError("no such file")))


@pytest.mark.parametrize("method", ["exact", pytest.param("stochastic", marks=pytest.mark.slow)])
def test_two_processes_on_gloo_equal_one_process(catalog, method):
    extra = ["--cavi", method, "--batch-size", "50", "--passes", "2"]
    out = {}
    for nproc in (1, 2):
        name = f"{nproc}-{method}"
        run = _vilab(catalog, nproc, "earthquake", "--data", "c.parquet", *FIT, *extra,
                     "--out", f"out{name}", "--json", f"{name}.json")  # fmt: skip
        assert run.returncode == 0, run.stderr
        # rank 0 alone prints and writes
        assert run.stdout.count("wrote:") == 1 and run.stdout.count("Earthquake mixture") == 1
        out[nproc] = json.loads((catalog / f"{nproc}-{method}.json").read_text())
    one, two = out[1]["cavi"], out[2]["cavi"]
    assert out[2]["source"]["processes"] == 2 and out[2]["n"] == out[1]["n"] == 2000
    if method == "exact":
        # the same sweeps: sums over the events in another order differ by rounding only
        assert one["iterations"] == two["iterations"]
        assert two["elbo"] == pytest.approx(one["elbo"], rel=1e-10, abs=0)
        for a, b in zip(one["means"], two["means"]):
            assert b == pytest.approx(a, rel=1e-10)
        assert two["weights"] == pytest.approx(one["weights"], rel=1e-10)
    else:
        # each step uses 50 events per process: 2 passes of 2000 in 80 steps of 50 or 40
        # steps of 100; the minibatches differ, the optimum not (0.1% of |ELBO|, the issue's
        # criterion; measured 2e-5)
        assert (one["iterations"], two["iterations"]) == (80, 40)
        assert two["elbo"] == pytest.approx(one["elbo"], rel=1e-3)


def test_a_bad_row_on_one_rank_stops_every_rank(tmp_path):
    # row group 1 (read by rank 1 only) holds a negative strength: both ranks must stop with
    # the same error naming the rank and the row, no output, and no rank waiting for the other
    simulate_parquet(tmp_path / "ok.parquet", HP, 600, seed=1, chunk_size=200)
    table = pq.read_table(tmp_path / "ok.parquet")
    s = table.column("s").to_pylist()
    s[250] = -3.0
    table = table.set_column(2, "s", pa.array(s))
    pq.write_table(table, tmp_path / "bad.parquet", row_group_size=200)
    start = time.perf_counter()
    run = _vilab(tmp_path, 2, "earthquake", "--data", "bad.parquet", *FIT, "--out", "out",
                 "--json", "bad.json")  # fmt: skip
    assert time.perf_counter() - start < 60
    assert run.returncode != 0
    assert run.stderr.count("rank 1 of 2") == 2 and "row 250" in run.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "bad.json").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--num-events", "100", "--steps", "0"], "give --data FILE.parquet --chunk-size N"),
        (["--data", "c.parquet", *FIT, "--jit"], "--jit compiles one process's loss"),
    ],
    ids=["not-streamed", "jit"],
)
def test_refused_under_torchrun_before_any_process_group(catalog, monkeypatch, capsys, argv,
                                                         message):  # fmt: skip
    # as torchrun would start it (WORLD_SIZE 2): refused before joining a process group, so
    # in one process here (a real 2-process launch is what the tests above do)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.chdir(catalog)
    with pytest.raises(SystemExit) as exit_info:
        main(["earthquake", *argv, "--out", "refused"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (catalog / "refused").exists()


@pytest.mark.slow  # 24 s; a rank without events in SVI is refused in the default run
def test_a_rank_without_row_groups_takes_part_without_data(tmp_path):
    # one row group, two processes: rank 1 reads nothing, and must neither stop nor hang; each
    # stochastic step then holds rank 0's minibatch alone, so the run is one process's run
    simulate_parquet(tmp_path / "one.parquet", HP, 500, seed=2, chunk_size=1000)
    stochastic = ["--cavi", "stochastic", "--batch-size", "50", "--passes", "1"]
    out = {}
    for nproc in (1, 2):
        run = _vilab(tmp_path, nproc, "earthquake", "--data", "one.parquet", *FIT, *stochastic,
                     "--out", f"o{nproc}", "--json", f"{nproc}.json")  # fmt: skip
        assert run.returncode == 0, run.stderr
        out[nproc] = json.loads((tmp_path / f"{nproc}.json").read_text())["cavi"]
    assert out[1]["iterations"] == out[2]["iterations"] == 10
    assert out[2]["elbo"] == pytest.approx(out[1]["elbo"], rel=1e-10, abs=0)


SVI = [*FIT[:2], *FIT[4:], "--steps", "40"]  # FIT with SVI: 40 steps, all events per step


def test_svi_on_two_processes_takes_one_process_steps(catalog):
    """DistributedDataParallel SVI (q of the globals, Z summed out in the model): each rank
    fits its share with the events' log-likelihood scaled by 2 and the same seed, so the two
    ranks' averaged gradient is one process's on the whole catalog and the 40 steps are the
    same to rounding (1e-10 relative; measured 1e-16). The exact ELBO is tracked and scored by
    a pass over both shares."""
    out = {}
    for nproc in (1, 2):
        run = _vilab(catalog, nproc, "earthquake", "--data", "c.parquet", *SVI,
                     "--out", f"svi{nproc}", "--json", f"svi{nproc}.json")  # fmt: skip
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("wrote:") == 1
        out[nproc] = json.loads((catalog / f"svi{nproc}.json").read_text())["svi"]
    one, two = out[1], out[2]
    assert two["guide"].startswith("globals") and two["iterations"] == 40 and not two["jit"]
    for key in ("elbo", "final_mc_elbo", "weights"):
        assert two[key] == pytest.approx(one[key], rel=1e-10)
    for a, b in zip(one["means"], two["means"]):
        assert b == pytest.approx(a, rel=1e-10)


@pytest.mark.slow  # (the default run keeps full-batch SVI on two processes)
def test_minibatch_svi_on_two_processes_reaches_cavi(catalog):
    """--subsample-size 100 per process, 100 steps: each step sees 200 of the 2,000 events.
    It lands within 0.05% of CAVI's ELBO (about 10 nats of 19,200; measured 0.0049% at 300
    steps) and its centres within 1 degree of CAVI's (cluster sd 7 degrees)."""
    run = _vilab(catalog, 2, "earthquake", "--data", "c.parquet", *SVI[:-1], "100",
                 "--subsample-size", "100", "--out", "mb", "--json", "mb.json")  # fmt: skip
    assert run.returncode == 0, run.stderr
    summary = json.loads((catalog / "mb.json").read_text())
    cavi, svi = summary["cavi"], summary["svi"]
    assert svi["elbo"] == pytest.approx(cavi["elbo"], rel=5e-4)
    for a, b in zip(cavi["means"], svi["means"]):
        assert b == pytest.approx(a, abs=1.0)


def test_svi_on_a_rank_without_events_is_refused_by_every_rank(tmp_path):
    # one row group, two processes: a Pyro plate cannot hold no events, so SVI is refused,
    # by both ranks at once and before any output
    simulate_parquet(tmp_path / "one.parquet", HP, 300, seed=2, chunk_size=1000)
    start = time.perf_counter()
    run = _vilab(tmp_path, 2, "earthquake", "--data", "one.parquet", *SVI, "--out", "o")
    assert time.perf_counter() - start < 60
    assert run.returncode != 0 and run.stderr.count("rank 1 of 2: SVI needs events") == 2
    assert "1 row groups for 2 processes: run at most 1" in run.stderr
    assert not (tmp_path / "o").exists()


# -- faults: a frozen rank, a killed launcher ------------------------------------------------
LONG_SVI = ["earthquake", "--data", "c.parquet", "--k", "3", "--chunk-size", "150",
            "--num-init", "1", "--steps", "1000000", "--subsample-size", "50",
            "--out", "out"]  # fmt: skip


class _Job:
    """``torchrun`` with two workers running ``argv`` in ``folder``; its stderr is collected as
    it comes (rank 0's progress bar says when SVI is under way)."""

    def __init__(self, folder, *argv):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node=2", "-m", "vilab", *argv]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("WORLD_SIZE", None)
        self.proc = subprocess.Popen(launcher, cwd=folder, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)  # fmt: skip
        self.chunks: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.workers: dict[int, int] = {}

    def _read(self):
        while chunk := os.read(self.proc.stderr.fileno(), 4096):
            self.chunks.append(chunk.decode(errors="replace"))

    @property
    def stderr(self) -> str:
        return "".join(self.chunks).replace("\r", "\n")

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until ``text`` appeared in stderr (an AssertionError after ``timeout``)."""
        start = time.monotonic()
        while text not in self.stderr:
            assert time.monotonic() - start < timeout, f"no {text!r} in: {self.stderr[-2000:]}"
            assert self.proc.poll() is None or text in self.stderr, self.stderr[-2000:]
            time.sleep(0.05)
        return time.monotonic() - start

    def find_workers(self) -> dict[int, int]:
        """{rank: pid} of the launcher's two workers (from /proc: parent and RANK)."""
        for entry in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            except (OSError, ValueError):
                continue
            if ppid == self.proc.pid and b"RANK" in env:
                self.workers[int(env[b"RANK"])] = int(entry)
        assert len(self.workers) == 2, self.workers
        return self.workers

    def close(self):
        for pid in self.workers.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=60)
        self.reader.join(timeout=10)
        self.proc.stderr.close()


def _state(pid: int) -> str | None:
    """The process's state letter (R, S, T, Z, ...), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def test_a_frozen_rank_stops_the_run_within_the_timeout_with_one_line(catalog):
    """SIGSTOP on rank 1 in the middle of data-parallel SVI: rank 0 waited for gloo's default
    (30 min, 10 min here before); with --timeout 5 it stops within seconds, with one line
    naming itself and the cause. (The test then kills the frozen worker, which the launcher
    would otherwise wait 30 s for.)"""
    job = _Job(catalog, *LONG_SVI, "--timeout", "5")
    try:
        job.wait_for("SVI", timeout=120)
        os.kill(job.find_workers()[1], signal.SIGSTOP)
        waited = job.wait_for("vilab earthquake:", timeout=60)
        time.sleep(0.5)  # the rest of the line
    finally:
        job.close()
    said = [x.strip() for x in job.stderr.splitlines() if x.startswith("vilab earthquake:")]
    assert said[0].startswith("vilab earthquake: error: rank 0 of 2: a collective failed "
                              "(Timed out waiting 5000ms")  # fmt: skip
    assert said[0].endswith("did not answer within the timeout of 5 s")
    assert 4 < waited < 20, waited


def test_killing_the_launcher_stops_its_workers(catalog):
    """SIGKILL to torchrun (no handler runs in it): its workers used to run on, orphaned;
    each now asked Linux for SIGTERM when its parent dies, and stops within seconds."""
    job = _Job(catalog, *LONG_SVI)
    try:
        job.wait_for("SVI", timeout=120)
        workers = job.find_workers()
        job.proc.kill()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(
            _state(pid) not in (None, "Z") for pid in workers.values()
        ):  # fmt: skip
            time.sleep(0.1)
        assert all(_state(pid) in (None, "Z") for pid in workers.values())
    finally:
        job.close()
