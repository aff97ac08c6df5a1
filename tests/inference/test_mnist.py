"""The MNIST loader: reads IDX files we write, rejects truncated or missing ones, binarises."""

from __future__ import annotations

import gzip

import pytest
import torch

from inference.data import MNIST_FILES, binarize, load_mnist
from tests.conftest import shared_data
from tests.idx_files import idx_bytes, mnist_mirror, write_mnist_dir


def test_reads_idx_files_we_write(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", num_train=40, num_test=12)
    data = load_mnist(folder)
    assert data.train_images.shape == (40, 784) and data.test_images.shape == (12, 784)
    assert data.train_labels.shape == (40,) and data.train_labels.dtype == torch.int64
    assert data.train_images.max().item() == pytest.approx(230 / 255)
    assert not data.md5_verified  # ours, not the official files
    assert sorted(p.name for p in folder.iterdir()) == sorted(MNIST_FILES)  # nothing added


def test_truncated_file_is_rejected_by_name(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist")
    path = folder / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        content = f.read()
    with gzip.open(path, "wb") as f:
        f.write(content[: len(content) // 2])  # a valid archive of a truncated IDX file
    with pytest.raises(ValueError, match="truncated or not IDX"):
        load_mnist(folder)


def test_broken_archive_is_rejected_by_name(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz is not a complete gzip"):
        load_mnist(folder)


def test_missing_files_are_listed_with_where_to_put_them(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist")
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match="lacks train-labels-idx1-ubyte.gz.*put the four"):
        load_mnist(folder)
    with pytest.raises(ValueError, match="is not a folder"):
        load_mnist(tmp_path / "nowhere")


def test_label_count_must_match_images(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist", num_train=10)
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(torch.zeros(9, dtype=torch.uint8)))
    with pytest.raises(ValueError, match="10 train images but labels of shape"):
        load_mnist(folder)


def test_binarize_round_and_sample():
    x = torch.tensor([[0.0, 0.49, 0.51, 1.0]])
    assert binarize(x, "round").tolist() == [[0.0, 0.0, 1.0, 1.0]]
    draws = binarize(x.expand(20000, 4), "sample", torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    se = (0.5 * 0.5 / 20000) ** 0.5
    assert abs(draws[:, 1].mean().item() - 0.49) < 4 * se
    with pytest.raises(ValueError, match="'round' or 'sample'"):
        binarize(x, "threshold")


def test_shared_mnist_is_the_official_md5_verified_set():
    data = load_mnist(shared_data("mnist"))
    assert data.md5_verified
    assert data.train_images.shape == (60000, 784) and data.test_images.shape == (10000, 784)
    assert data.train_images.mean().item() == pytest.approx(0.130660, abs=1e-6)


def test_download_fills_the_cache_once_and_later_runs_stay_offline(tmp_path, monkeypatch):
    """``download=True`` fetches the four files through torchvision (its md5 check included)
    from a local mirror; a later call without it reads the cache with the mirror gone."""
    files = write_mnist_dir(tmp_path / "served", num_train=30, num_test=7)
    cache = tmp_path / "cache"
    with mnist_mirror(files, monkeypatch) as (_, seen):
        data = load_mnist(download=True, cache_dir=cache)
    assert {path.rsplit("/", 1)[-1] for path, _ in seen} == set(MNIST_FILES)
    assert data.train_images.shape == (30, 784) and data.test_images.shape == (7, 784)
    again = load_mnist(cache_dir=cache)  # nothing listens now: the cache alone
    assert torch.equal(again.train_images, data.train_images)


def test_an_empty_cache_asks_for_download_and_a_failed_one_says_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"MNIST is not in the cache '.*empty': pass --download"):
        load_mnist(cache_dir=tmp_path / "empty")
    files = write_mnist_dir(tmp_path / "served")
    with mnist_mirror(files, monkeypatch):
        pass  # the mirror is closed again
    with pytest.raises(ValueError, match=r"could not download MNIST into .*; offline, put the"):
        load_mnist(download=True, cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="--download fills the cache; it does not go with"):
        load_mnist(files, download=True)
