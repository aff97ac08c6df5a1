"""ParquetChunks: any Parquet file as chunks of tensors, each pass from the start; bad files,
columns and settings refused by name."""

from __future__ import annotations

import os

import pytest
import torch

from inference.data import ParquetChunks

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({
        "a": [1.5, 2.5, 3.5, 4.5, 5.5], "b": [0.0, 1.0, 0.0, 1.0, 0.0],
        "i": [3, 1, 4, 1, 5], "flag": [True, False, True, True, False],
        "name": ["p", "q", "r", "s", "t"],
    }), path, row_group_size=2)  # fmt: skip
    return path


def test_columns_arrive_as_tensors_row_group_by_row_group(table):
    chunks = ParquetChunks(table, {"x": ["a", "b"], "idx": "i", "keep": "flag"}, chunk_size=10)
    first, second = list(chunks), list(chunks)  # every iter() is a pass from the start
    assert [c["idx"].tolist() for c in first] == [[3, 1], [4, 1], [5]]
    assert first[0]["x"].dtype == torch.float64 and first[0]["x"].shape == (2, 2)
    assert first[0]["idx"].dtype == torch.int64 and first[0]["keep"].dtype == torch.bool
    assert all(torch.equal(c["x"], d["x"]) for c, d in zip(first, second))


def test_ranks_share_the_row_groups(table):
    shares = [list(ParquetChunks(table, {"i": "i"}, rank=r, world_size=2)) for r in (0, 1)]
    assert [c["i"].tolist() for c in shares[0]] == [[3, 1], [5]]
    assert [c["i"].tolist() for c in shares[1]] == [[4, 1]]


@pytest.mark.parametrize("columns,match", [
    ({"x": "nope"}, "has no column 'nope'"),
    ({"x": "name"}, "column 'name' holds string, not numbers or booleans"),
    ({"x": ["a", "i"]}, r"columns\['x'\] mixes \['float', 'integer'\] columns"),
    ({}, "columns must be a non-empty dict"),
    ({"x": []}, r"columns\['x'\] must be a column name or a non-empty list"),
])  # fmt: skip
def test_bad_columns_are_refused_by_name(table, columns, match):
    with pytest.raises(ValueError, match=match):
        ParquetChunks(table, columns)


def test_bad_files_and_settings_are_refused(table, tmp_path):
    text = tmp_path / "text.parquet"
    text.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="is not a Parquet file"):
        ParquetChunks(text)
    with pytest.raises(ValueError, match="does not exist"):
        ParquetChunks(tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1, got 0"):
        ParquetChunks(table, {"i": "i"}, chunk_size=0)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 1\], got 2"):
        ParquetChunks(table, {"i": "i"}, rank=2, world_size=2)


def test_a_file_changed_between_passes_is_refused(table):
    chunks = ParquetChunks(table, {"i": "i"})
    list(chunks)
    stat = os.stat(table)
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="changed on disk since it was opened"):
        list(chunks)
