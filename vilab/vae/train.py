"""Training the Bernoulli VAE by Pyro SVI, epoch by epoch, with exact checkpoint/resume.

Each epoch: shuffle the training images (a dedicated, seeded ``torch.Generator``), binarise them
(``round``: once; ``sample``: afresh each epoch, from the same generator), take one
:class:`inference.svi.SVIStep` per minibatch, then score the test set by the per-image
negative ELBO (:func:`vilab.vae.evaluate.negative_elbo`, its own generator, so evaluating never
changes the training trajectory). After each epoch a checkpoint is written atomically: the
networks, Adam's state, the epoch history, and every random state (torch's and Pyro's global
ones, the data generator). ``resume=True`` continues from it and reproduces the uninterrupted
run bit for bit on the CPU.

A NaN or infinite loss stops training with a :class:`FloatingPointError` naming the epoch and
batch; the last checkpoint, from the previous epoch, is left as it was.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pyro
import torch
from tqdm.auto import tqdm

from guides.vae import VAEGuide
from inference.data import binarize
from inference.estimators import get_elbo
from inference.svi import SVIStep
from ppl_models.vae import MAX_PLATE_NESTING, VAEModel
from vilab.vae.checkpoint import load_checkpoint, restore, rng_state, save_checkpoint
from vilab.vae.evaluate import negative_elbo

__all__ = [
    "EpochRecord",
    "VAEConfig",
    "VAEResult",
    "build_vae",
    "train_vae",
]


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Everything that defines a training run (a checkpoint only resumes the same config).

    Attributes:
        latent_dim, hidden_dim, num_hidden: the architecture (source: 200, 400, 2).
        estimator: ``trace``, ``meanfield`` or ``stl``. particles: per step (vectorised).
        batch_size, lr: minibatch size and Adam learning rate (source: 100, 1e-3).
        binarize: ``round`` or ``sample``. seed: weights, shuffling, binarisation, noise.
    """

    latent_dim: int = 200
    hidden_dim: int = 400
    num_hidden: int = 2
    estimator: str = "meanfield"
    particles: int = 1
    batch_size: int = 100
    lr: float = 1e-3
    binarize: str = "round"
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("latent_dim", "hidden_dim", "num_hidden", "particles", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.estimator not in ("trace", "meanfield", "stl"):
            raise ValueError(
                f"estimator must be one of trace, meanfield, stl, got {self.estimator!r}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.binarize not in ("round", "sample"):
            raise ValueError(f"binarize must be 'round' or 'sample', got {self.binarize!r}")


class EpochRecord(NamedTuple):
    """One epoch: train loss and test -ELBO in nats per image, training seconds."""

    epoch: int
    train_loss: float
    test_nelbo: float
    seconds: float


class VAEResult(NamedTuple):
    """Result of :func:`train_vae`: the trained modules and the whole history (resumed epochs
    included); ``test_images`` is the binarised test set the history was scored on."""

    model: VAEModel
    guide: VAEGuide
    history: list[EpochRecord]
    test_images: torch.Tensor


def build_vae(
    config: VAEConfig, data_dim: int, device="cpu", dtype=torch.float32
) -> tuple[VAEModel, VAEGuide]:
    """The model and guide of ``config`` with their initial weights drawn from
    ``torch.manual_seed(config.seed)``: the same weights every time (for any trainer)."""
    torch.manual_seed(config.seed)
    sizes = (data_dim, config.latent_dim, config.hidden_dim, config.num_hidden)
    return VAEModel(*sizes).to(device, dtype), VAEGuide(*sizes).to(device, dtype)


def train_vae(
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    config: VAEConfig,
    *,
    epochs: int,
    device: torch.device | str = "cpu",
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch: Callable[[EpochRecord, VAEModel, VAEGuide], None] | None = None,
    jit: bool | str = True,
) -> VAEResult:
    """Train (or resume training) a VAE on ``train_images`` for ``epochs`` epochs in total.

    Args:
        train_images, test_images: (N, D), (M, D) intensities in [0, 1] (CPU tensors).
        config: :class:`VAEConfig`. epochs: total epochs (a resumed run continues to this).
        device: where the networks and minibatches live.
        checkpoint: file written after every epoch (None: no checkpoints).
        resume: continue from ``checkpoint`` (which must exist and match ``config`` and the
            data sizes).
        progress: tqdm bar over minibatches.
        on_epoch: called as ``on_epoch(record, model, guide)`` after each new epoch (and its
            checkpoint).
        jit: compile the loss (``get_elbo(..., jit=jit)``: True or a backend name; the same
            steps at the same seed; a trace per minibatch shape, i.e. one more for a smaller
            last batch). Not part of ``config``: a checkpoint resumes either way.

    Raises:
        ValueError: bad arguments, or a checkpoint that is missing or from another config.
        FloatingPointError: the loss became NaN or infinite (the last checkpoint is kept).
    """
    _check_arguments(train_images, test_images, epochs, checkpoint, resume)
    device = torch.device(device)
    dtype = train_images.dtype
    N, D = train_images.shape
    data_id = {"num_train": N, "num_test": test_images.shape[0], "data_dim": D}

    model, guide = build_vae(config, D, device, dtype)
    elbo = get_elbo(
        config.estimator,
        jit=jit,
        num_particles=config.particles,
        vectorize_particles=config.particles > 1,
        max_plate_nesting=MAX_PLATE_NESTING,
    )
    step = SVIStep(model, guide, elbo, config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    pyro.set_rng_seed(config.seed)
    history: list[EpochRecord] = []
    fixed_train = binarize(train_images, "round") if config.binarize == "round" else None
    # the test set is binarised once, the same way every run (a fixed stochastic one for "sample")
    test_gen = torch.Generator().manual_seed(config.seed + 1)
    test_x = binarize(test_images, config.binarize, test_gen).to(device)
    if resume:
        history = _resume(Path(checkpoint), config, data_id, model, guide, step, gen, device)

    epoch = len(history) + 1
    try:
        for epoch in range(len(history) + 1, epochs + 1):
            start = time.perf_counter()
            perm = torch.randperm(N, generator=gen)
            images = (
                fixed_train if fixed_train is not None else binarize(train_images, "sample", gen)
            )
            batches = [perm[b : b + config.batch_size] for b in range(0, N, config.batch_size)]
            total = _run_epoch(step, images, batches, (epoch, epochs), device, checkpoint, progress)
            seconds = time.perf_counter() - start
            eval_gen = torch.Generator(device=device).manual_seed(config.seed + 2 + epoch)
            test_nelbo = negative_elbo(model, guide, test_x, eval_gen).mean().item()
            record = EpochRecord(epoch, total / N, test_nelbo, seconds)
            history.append(record)
            if checkpoint is not None:
                state = {
                    "config": dataclasses.asdict(config),
                    "data": data_id,
                    "model": model.state_dict(),
                    "guide": guide.state_dict(),
                    "optimizer": step.optimizer.state_dict(),
                    "history": [tuple(r) for r in history],
                    "rng": rng_state(gen, device),
                }
                save_checkpoint(checkpoint, state)
            if on_epoch is not None:
                on_epoch(record, model, guide)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(epoch, checkpoint)) from None
    return VAEResult(model, guide, history, test_x)


def _interrupted(epoch: int, checkpoint) -> str:
    """What a Ctrl-C in ``epoch`` leaves. The checkpoint is replaced atomically, so it is whole:
    the one just written, or the previous one if the write was cut short. Which, the file
    itself says (read back, without running code, rather than tracked: the signal may land
    between the rename and any bookkeeping after it)."""
    try:
        saved = len(load_checkpoint(Path(checkpoint))["history"]) if checkpoint else 0
    except ValueError:  # no file yet
        saved = 0
    if not saved:
        return f"in epoch {epoch}, before any checkpoint was written"
    return (
        f"in epoch {epoch}; the checkpoint {str(checkpoint)!r} holds epoch {saved}: "
        "continue with the same flags and --resume"
    )


def _check_arguments(train_images, test_images, epochs, checkpoint, resume) -> None:
    """Raise ValueError, naming the argument, before any work."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if (
        train_images.dim() != 2
        or test_images.dim() != 2
        or train_images.shape[1] != test_images.shape[1]
    ):
        raise ValueError(
            f"images must be (N, D) and (M, D), got {tuple(train_images.shape)} and "
            f"{tuple(test_images.shape)}"
        )
    if resume and checkpoint is None:
        raise ValueError("resume needs a checkpoint file")


def _resume(path: Path, config, data_id, model, guide, step, gen, device) -> list[EpochRecord]:
    """Load the weights, Adam's state and the random states of the run that wrote ``path``;
    return its history. Refuses a missing file, one from another config or data, and one
    whose contents are not whole (:func:`vilab.vae.checkpoint.load_checkpoint`)."""
    if not path.is_file():
        raise ValueError(f"--resume: no checkpoint at {str(path)!r}")
    state = load_checkpoint(path, map_location=device)
    if state["config"] != dataclasses.asdict(config) or state["data"] != data_id:
        raise ValueError(
            f"--resume: checkpoint {str(path)!r} is from another run "
            f"(config {state['config']}, data {state['data']}); give the same flags"
        )
    restore(path, state, {"model": model, "guide": guide}, step.optimizer, gen)
    return [EpochRecord(*r) for r in state["history"]]


def _run_epoch(step, images, batches, epoch_of, device, checkpoint, progress) -> float:
    """One SVI step per minibatch ``images[index]`` for each index tensor of ``batches``;
    returns the summed loss.

    ``epoch_of``: (this epoch, the last one), for the progress bar. A NaN or infinite loss
    raises FloatingPointError naming the epoch, the batch and the last good checkpoint."""
    total, seen = 0.0, 0
    epoch, epochs = epoch_of
    bar = tqdm(
        batches, desc=f"epoch {epoch}/{epochs}", disable=not progress, leave=False, mininterval=0.5
    )
    with pyro.validation_enabled(False):
        for b, index in enumerate(bar):
            seen += index.shape[0]
            try:
                total += step(images[index].to(device, non_blocking=True))
            except FloatingPointError as err:
                kept = (
                    f"; the last good checkpoint is {checkpoint}"
                    if checkpoint is not None and Path(checkpoint).is_file()
                    else "; no checkpoint was written yet"
                )
                raise FloatingPointError(
                    f"{err} at epoch {epoch}, batch {b + 1}/{len(batches)}{kept}; try a lower --lr"
                ) from None
            if progress and b % 50 == 0:
                bar.set_postfix(loss=f"{total / seen:.2f}", refresh=False)
    return total
