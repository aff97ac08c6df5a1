"""Writing small MNIST-style IDX files for tests (the format of LeCun et al.'s MNIST page)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import struct
from pathlib import Path

import torch

from tests.http_server import serving

_UBYTE = 0x08


def idx_bytes(array: torch.Tensor) -> bytes:
    """IDX encoding of a uint8 tensor: magic (0, 0, 0x08, ndim), big-endian sizes, the data."""
    array = array.to(torch.uint8).contiguous()
    header = struct.pack(">BBBB", 0, 0, _UBYTE, array.dim())
    header += b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.numpy().tobytes()


def write_mnist_dir(folder: Path, num_train: int = 64, num_test: int = 32, seed: int = 0) -> Path:
    """Four gzipped IDX files under MNIST's official names: random digits-like images (a blob of
    bright pixels in a random place on a dark background) and random labels."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    for split, n in (("train", num_train), ("t10k", num_test)):
        images = torch.zeros(n, 28, 28, dtype=torch.uint8)
        rows = torch.randint(4, 20, (n,), generator=gen)
        cols = torch.randint(4, 20, (n,), generator=gen)
        for i in range(n):  # a few dozen test images; clarity over speed
            images[i, rows[i] : rows[i] + 8, cols[i] : cols[i] + 6] = 230
        labels = torch.randint(0, 10, (n,), generator=gen, dtype=torch.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            with gzip.open(folder / f"{split}-{kind}-ubyte.gz", "wb") as f:
                f.write(idx_bytes(array))
    return folder


@contextlib.contextmanager
def mnist_mirror(folder: Path, monkeypatch):
    """torchvision's MNIST downloads from a local server that serves the four files of
    ``folder`` (with their md5s in place of the official ones, which torchvision checks);
    yields the server's base URL and the requests it saw."""
    from torchvision.datasets import MNIST

    names = [name for name, _ in MNIST.resources]
    files = {name: (Path(folder) / name).read_bytes() for name in names}

    def answer(path: str, query: dict) -> tuple[int, bytes]:
        name = path.rsplit("/", 1)[-1]
        return (200, files[name]) if name in files else (404, b"not here")

    with serving(answer) as (base, seen):
        monkeypatch.setattr(MNIST, "mirrors", [f"{base}/mnist/"])
        md5s = [(name, hashlib.md5(data).hexdigest()) for name, data in files.items()]
        monkeypatch.setattr(MNIST, "resources", md5s)
        yield base, seen
