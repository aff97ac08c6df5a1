"""MNIST through ``torchvision.datasets.MNIST``: downloaded when asked, or read from a folder.

Two ways in:

- ``load_mnist(download=True)``: torchvision downloads the four IDX files into ``cache_dir``
  (default ``$VILAB_CACHE`` or ``~/.cache/vilab``) and checks their md5s; needs the network
  once. Later ``load_mnist()`` reads the cache and never touches the network.
- ``load_mnist(data_dir=FOLDER)``: offline. FOLDER holds the four ``.gz`` files under their
  official names (``MNIST_FILES``). They are decompressed into a
  temporary folder and read by torchvision's own IDX reader, so nothing is written beside them.
  Their md5s are compared with torchvision's list: ``Mnist.md5_verified`` says whether they are
  the official files (files we write ourselves, e.g. in tests, are read but not "verified").

A missing file, a corrupt archive or a truncated IDX file raises ``ValueError`` saying which file
and where the four files should be. Binarisation is separate and explicit (:func:`binarize`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import torch

__all__ = ["MNIST_FILES", "Mnist", "binarize", "default_cache_dir", "load_mnist"]

# name -> md5 of the official .gz file (torchvision.datasets.MNIST.resources)
MNIST_FILES = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}


class Mnist(NamedTuple):
    """MNIST as flat float images in [0, 1] (pixel / 255).

    Attributes:
        train_images: (N_train, 784) float32. train_labels: (N_train,) int64.
        test_images: (N_test, 784) float32. test_labels: (N_test,) int64.
        source: where the files came from. md5_verified: all four are the official files.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    md5_verified: bool


def default_cache_dir() -> Path:
    """``$VILAB_CACHE`` or ``~/.cache/vilab``."""
    return Path(os.environ.get("VILAB_CACHE", Path.home() / ".cache" / "vilab"))


def _where_to_put(data_dir) -> str:
    return (
        f"put the four MNIST files ({', '.join(MNIST_FILES)}) in {data_dir} "
        "(the names torchvision downloads), or pass --download instead of --data-dir"
    )


def _download_failed(root: Path, err: Exception) -> str:
    reason = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
    return f"could not download MNIST into {str(root)!r} ({reason}); offline, " + _where_to_put(
        "a folder and pass it as --data-dir"
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_split(root: Path, train: bool, label: str):
    """torchvision's reader on ``root/MNIST/raw``; its errors turned into ValueErrors."""
    from torchvision.datasets import MNIST

    split = "train" if train else "t10k"
    try:
        data = MNIST(str(root), train=train, download=False)
    except (AssertionError, RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ValueError(
            f"{label}: the {split} IDX files are truncated or not IDX files ({err}); "
            f"replace them with the official ones"
        ) from None
    images, labels = data.data, data.targets
    if images.dim() != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{label}: {split} images have shape {tuple(images.shape)}, not (N, 28, 28)"
        )
    if labels.shape != (images.shape[0],):
        raise ValueError(
            f"{label}: {images.shape[0]} {split} images but labels of shape {tuple(labels.shape)}"
        )
    return images.reshape(images.shape[0], -1).float() / 255.0, labels.long()


def load_mnist(
    data_dir: str | os.PathLike | None = None, *, download: bool = False, cache_dir=None
) -> Mnist:
    """Both splits of MNIST, from ``data_dir`` (offline) or from the cache, which
    ``download=True`` fills through torchvision (its mirrors, md5-checked) when it is empty.

    Args:
        data_dir: folder with the four official ``.gz`` files (then ``download`` must be
            False), or None for the cache.
        download: fetch the files into the cache if they are not there (never otherwise: a
            run without it does not touch the network).
        cache_dir: the cache (default :func:`default_cache_dir`); torchvision keeps the files
            in its ``MNIST/raw``.

    Raises:
        ValueError: a missing folder or file, a corrupt archive, a truncated IDX file, an
            empty cache without ``download``, or a failed download -- each saying where the
            files should be.
    """
    if not isinstance(download, bool):
        raise ValueError(f"download must be True or False, got {download!r}")
    if data_dir is not None and download:
        raise ValueError("--download fills the cache; it does not go with --data-dir")
    if data_dir is None:
        from torchvision.datasets import MNIST

        root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        try:
            for train in (True, False):
                MNIST(str(root), train=train, download=download)
        except RuntimeError as err:
            if download or "not found" not in str(err):
                raise ValueError(_download_failed(root, err)) from None
            raise ValueError(
                f"MNIST is not in the cache {str(root)!r}: pass --download to fetch it (four "
                "files, 11 MB, through torchvision), or --data-dir FOLDER with the four .gz "
                "files"
            ) from None
        except Exception as err:  # network errors come in many types
            raise ValueError(_download_failed(root, err)) from None
        train_images, train_labels = _read_split(root, True, str(root))
        test_images, test_labels = _read_split(root, False, str(root))
        return Mnist(train_images, train_labels, test_images, test_labels, str(root), True)

    folder = Path(data_dir)
    if not folder.is_dir():
        raise ValueError(f"--data-dir {str(folder)!r} is not a folder; " + _where_to_put(folder))
    missing = [name for name in MNIST_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"--data-dir {str(folder)!r} lacks {', '.join(missing)}; " + _where_to_put(folder)
        )
    verified = all(_md5(folder / name) == md5 for name, md5 in MNIST_FILES.items())
    with tempfile.TemporaryDirectory(prefix="vilab-mnist-") as tmp:
        raw = Path(tmp) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        for name in MNIST_FILES:
            try:
                with gzip.open(folder / name, "rb") as src, open(raw / name[:-3], "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError, zlib.error) as err:
                raise ValueError(
                    f"{folder / name} is not a complete gzip archive ({err}); "
                    "replace it with the official file"
                ) from None
        train_images, train_labels = _read_split(Path(tmp), True, str(folder))
        test_images, test_labels = _read_split(Path(tmp), False, str(folder))
    return Mnist(train_images, train_labels, test_images, test_labels, str(folder), verified)


def binarize(
    images: torch.Tensor, mode: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Binary images for the Bernoulli likelihood.

    Args:
        images: (N, D) intensities in [0, 1].
        mode: ``"round"`` -- x >= 0.5 (the source course's fixed threshold; no MNIST pixel is
            exactly 0.5); ``"sample"`` -- x ~ Bernoulli(intensity), fresh each call (dynamic
            binarisation, standard in the VAE literature).
        generator: for ``"sample"``.

    Returns:
        (N, D) tensor of 0.0 / 1.0 in the dtype of ``images``.
    """
    if mode == "round":
        return (images >= 0.5).to(images.dtype)
    if mode == "sample":
        return torch.bernoulli(images, generator=generator)
    raise ValueError(f"binarize mode must be 'round' or 'sample', got {mode!r}")
