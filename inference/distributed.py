"""Data-parallel runs on ``torch.distributed``, as launched by ``torchrun``.

``torchrun --nproc-per-node P -m vilab earthquake ...`` starts P processes with ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment (several machines: the
same command on each, with ``--nnodes``, ``--node-rank`` and a rendezvous endpoint; PyTorch's
"torchrun (Elastic Launch)" documentation). :func:`process_group` opens the default process
group from that environment -- gloo for CPU tensors, NCCL for CUDA -- and gives a
:class:`Collective`: the collective operations data-parallel CAVI and SVI need.

* :meth:`Collective.all_reduce_sum` is the ``reduce`` of
  :func:`analytic.earthquake.streamed.streamed_cavi` and
  :func:`analytic.earthquake.stochastic.stochastic_cavi`: every rank reads its own share of a
  catalog, and the sufficient statistics (``4 K + 1`` numbers a sweep) are summed.
* :meth:`Collective.gather` joins small per-rank pieces (the seeding sample) on every rank.
* :meth:`Collective.agree` runs a step that can fail on one rank alone (opening its file,
  checking its rows) and makes every rank raise the same error if any failed -- so no rank
  waits forever in a later collective for a rank that has stopped.
* :meth:`Collective.data_parallel` wraps a module (Pyro's ELBO module, whose parameters are the
  guide's) in ``torch.nn.parallel.DistributedDataParallel``: rank 0's parameters are broadcast
  at the start, and every ``backward`` averages the gradients over the ranks.
  :meth:`Collective.mean` averages the loss value, so every rank sees the same number (and, if
  it is not finite, every rank stops at the same step).

Outside ``torchrun`` (``WORLD_SIZE`` unset or 1) everything is the identity and no process group
is created, so the same code runs in one process.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = [
    "DEFAULT_TIMEOUT",
    "Collective",
    "RankFailure",
    "check_timeout",
    "launched",
    "process_group",
]

T = TypeVar("T")

# How long a collective waits for the other ranks before failing (a rank killed, frozen or
# stopped from outside): gloo's own default is 30 minutes, during which every rank would wait.
DEFAULT_TIMEOUT = 60.0

_PR_SET_PDEATHSIG = 1  # prctl(2): a signal for this process when its parent exits


class RankFailure(ConnectionError):
    """A collective failed on this rank because another rank died, was killed, froze or
    stopped answering within the timeout: the run cannot go on, on any rank."""


def _die_with_the_launcher() -> None:
    """Ask Linux for SIGTERM when the launcher (this worker's parent) exits, even by SIGKILL:
    a killed ``torchrun`` then stops its workers instead of leaving them running. Elsewhere
    (no ``prctl``) it does nothing."""
    import ctypes
    import signal

    launcher = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return
    # the launcher died before the request took effect (compared with the parent seen before,
    # not with PID 1: in a container the launcher itself may be PID 1)
    if os.getppid() != launcher:
        os.kill(os.getpid(), signal.SIGTERM)


def launched() -> bool:
    """Whether this process is one of several started by ``torchrun`` (``WORLD_SIZE > 1``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise ValueError(
            f"WORLD_SIZE must be an integer, got {os.environ['WORLD_SIZE']!r}"
        ) from None


class Collective:
    """The ranks of the default process group (or one process alone: ``world_size == 1``).

    Attributes:
        rank, world_size: this process's rank and the number of processes.
        device: where the collectives move tensors (CPU for gloo, the CUDA device for NCCL).
    """

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank, self.world_size, self.device = rank, world_size, device

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``tensor`` over the ranks (a new tensor where it was on)."""
        if self.world_size == 1:
            return tensor
        moved = tensor.to(self.device, copy=True)
        dist.all_reduce(moved, op=dist.ReduceOp.SUM)
        return moved.to(tensor.device)

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable; small: it travels through pickle), in rank order."""
        if self.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def agree(self, step: Callable[[], T]) -> T:
        """``step()`` on every rank; if it raised ValueError or OSError on any rank, every rank
        raises one ValueError naming the first failing rank and its message.

        Use it around work that reads rank-local input before a collective, so that a failure
        stops every rank at once instead of leaving the others waiting.
        """
        try:
            result, error = step(), None
        except (ValueError, OSError) as err:
            result, error = None, str(err)
        if self.world_size == 1:
            if error is not None:
                raise ValueError(error)
            return result
        errors = self.gather(error)
        failed = [(rank, e) for rank, e in enumerate(errors) if e is not None]
        if failed:
            rank, message = failed[0]
            raise ValueError(f"rank {rank} of {self.world_size}: {message}")
        return result

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a 0-dim tensor over the ranks, as a float (the value itself alone)."""
        value = value.detach().reshape(1)
        return (self.all_reduce_sum(value) / self.world_size).item()

    def data_parallel(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in ``DistributedDataParallel`` (its gradients averaged over the ranks in
        every backward; rank 0's parameters and buffers broadcast now), or ``module`` itself in
        one process. The module's parameters must exist already (call a lazily built guide,
        such as Pyro's autoguides, once first)."""
        if self.world_size == 1:
            return module
        ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)


_BACKEND_WORDS = re.compile(r"gloo|NCCL|Timed out|Connection (closed|reset)|Socket Timeout")


def _collective_failure(err: RuntimeError) -> str | None:
    """The cause of a failed collective in a few words (gloo's source path and its closing
    advice dropped), or None for an error that is not the process group's."""
    text = str(err).strip()
    if not (isinstance(err, dist.DistError) or _BACKEND_WORDS.search(text)):
        return None
    text = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0])  # "[.../pair.cc:545] "
    return text.split(". This is typically")[0].rstrip(".")[:200]


def check_timeout(timeout) -> float:
    """``timeout`` seconds, a number in [1, 86400]."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
        1 <= timeout <= 86400
    ):  # fmt: skip
        raise ValueError(f"timeout must be a number of seconds in [1, 86400], got {timeout!r}")
    return float(timeout)


@contextmanager
def process_group(device: torch.device, timeout: float = DEFAULT_TIMEOUT) -> Iterator[Collective]:
    """The default process group for this run (module docstring), destroyed on exit.

    Args:
        device: where the run's tensors live; CUDA picks NCCL (and this rank's
            ``LOCAL_RANK`` GPU), CPU gloo.
        timeout: seconds a collective waits for the other ranks. A rank that dies, is killed
            or freezes (SIGSTOP) then ends every other rank within about this time, each with
            one :class:`RankFailure` naming itself and the cause, instead of waiting for gloo's
            30 minutes. A worker also stops (SIGTERM) when its launcher dies.

    Raises:
        RankFailure: a collective failed because another rank is gone or frozen.
    """
    timeout = check_timeout(timeout)
    if not launched():
        yield Collective(0, 1, torch.device("cpu"))
        return
    _die_with_the_launcher()
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        backend, device = "nccl", torch.device("cuda", local)
    else:
        backend, device = "gloo", torch.device("cpu")
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    rank, world_size = dist.get_rank(), dist.get_world_size()
    try:
        yield Collective(rank, world_size, device)
    except RuntimeError as err:
        dist.destroy_process_group()  # no barrier: the other ranks may never reach one
        cause = _collective_failure(err)
        if cause is None:  # an error of the run itself, not of the group
            raise
        raise RankFailure(
            f"rank {rank} of {world_size}: a collective failed ({cause}): another rank died, "
            f"was killed, or did not answer within the timeout of {timeout:g} s"
        ) from None
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other ranks may never reach one
        raise
    # A DDP wrapper caught in a reference cycle (Pyro's modules make them) would otherwise be
    # freed at interpreter exit, after the group, and gloo's worker threads then abort the
    # process ("terminate called without an active exception", seen 1 run in 4): free it
    # while the group lives, and let no rank tear the group down while another still uses it.
    gc.collect()
    dist.barrier()
    dist.destroy_process_group()
