"""Parquet catalogs: conversion from CSV, simulation in chunks, reading in chunks and shares."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from analytic.earthquake import Hyperparameters
from inference.data import (
    CatalogSchema,
    ParquetCatalog,
    convert_csv,
    is_parquet,
    join_pieces,
    load_catalog,
    parse_bbox,
    simulate_parquet,
)
from ppl_models.earthquake import simulate

USGS = "time,latitude,longitude,depth,mag,place\n"
ROWS = [  # lat, lon, mag: magnitudes that round differently at scale 10 (banker's rounding)
    (10.0, 100.0, 6.04), (40.5, 140.25, 5.55), (-5.0, 140.0, 7.1), (33.3, -117.7, 5.65),
    (-60.0, -20.0, 6.0), (0.0, 179.5, 8.25), (12.0, 120.0, 5.45),
]  # fmt: skip


def _csv(tmp_path, rows=ROWS, extra="", name="c.csv"):
    path = tmp_path / name
    body = "".join(f"t,{lat},{lon},1,{mag},x\n" for lat, lon, mag in rows)
    path.write_text(USGS + body + extra)
    return path


@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_converted_catalog_reads_back_as_the_csv_reader_reads_the_csv(tmp_path, chunk_size):
    csv = _csv(tmp_path)
    counts = convert_csv(csv, tmp_path / "c.parquet", chunk_size=chunk_size)
    assert counts == {"num_rows": 7, "num_invalid": 0, "num_outside": 0, "num_written": 7}
    assert pq.ParquetFile(tmp_path / "c.parquet").num_row_groups == math.ceil(7 / chunk_size)
    for scale in (1.0, 10.0):
        a = load_catalog(csv, CatalogSchema(strength_scale=scale))
        b = ParquetCatalog(
            tmp_path / "c.parquet", CatalogSchema(strength_scale=scale), chunk_size=2
        ).load()
        assert torch.equal(a.X, b.X) and torch.equal(a.S, b.S)
        assert torch.equal(a.magnitude, b.magnitude)


def test_bbox_and_drop_invalid_at_conversion_and_at_reading(tmp_path):
    bad = "t,95,10,1,6,x\nt,nan,10,1,6,x\nt,1,2,1,,x\n"
    csv = _csv(tmp_path, extra=bad)
    box = parse_bbox("0,50,100,150")
    counts = convert_csv(csv, tmp_path / "c.parquet", CatalogSchema(bbox=box, drop_invalid=True))
    assert counts == {"num_rows": 10, "num_invalid": 3, "num_outside": 4, "num_written": 3}
    a = load_catalog(csv, CatalogSchema(bbox=box, drop_invalid=True))
    b = ParquetCatalog(tmp_path / "c.parquet").load()
    assert torch.equal(a.X, b.X) and torch.equal(a.S, b.S)
    # the same selection at reading time, from a file holding every valid row
    convert_csv(csv, tmp_path / "all.parquet", CatalogSchema(drop_invalid=True))
    c = ParquetCatalog(tmp_path / "all.parquet", CatalogSchema(bbox=box)).load()
    assert torch.equal(a.X, c.X) and (c.num_outside, c.num_invalid) == (4, 0)


def test_invalid_rows_stop_the_conversion_and_leave_no_file(tmp_path):
    csv = _csv(tmp_path, extra="t,95,10,1,6,x\n")
    with pytest.raises(ValueError) as info:
        convert_csv(csv, tmp_path / "c.parquet", chunk_size=2)
    assert str(info.value) == (
        f"catalog {str(csv)!r} has 1 invalid row(s): line 9: latitude 95.0 is outside "
        "[-90, 90]. Fix them or pass --drop-invalid to skip them"
    )
    assert list(tmp_path.iterdir()) == [csv]


def _geographic_parquet(path, lat, lon, mag, row_group_size=3):
    table = pa.table({"Latitude": lat, "Longitude": lon, "Mag": mag})
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.mark.parametrize(
    "lat, lon, mag, reason",
    [
        (math.nan, 1.0, 6.0, "latitude nan is not finite"),
        (1.0, math.inf, 6.0, "longitude inf is not finite"),
        (1.0, 1.0, math.nan, "magnitude nan is not finite"),
        (-90.5, 1.0, 6.0, "latitude -90.5 is outside [-90, 90]"),
        (1.0, 180.5, 6.0, "longitude 180.5 is outside [-180, 180]"),
        (1.0, 1.0, -0.6, "magnitude -0.6 gives a negative strength"),
        (1.0, 1.0, 1e16, "magnitude 1e+16 times strength scale 1 is beyond 2**53 (strengths "
         "must be integers float64 holds exactly)"),
    ],
)  # fmt: skip
def test_a_bad_row_in_a_later_chunk_is_named_by_its_row(tmp_path, lat, lon, mag, reason):
    lats, lons, mags = [10.0] * 8, [20.0] * 8, [6.0] * 8
    lats[6], lons[6], mags[6] = lat, lon, mag
    path = _geographic_parquet(tmp_path / "g.parquet", lats, lons, mags)
    catalog = ParquetCatalog(path, chunk_size=2)
    with pytest.raises(ValueError) as info:
        list(catalog.chunks())
    assert str(info.value) == (
        f"catalog {str(path)!r} has 1 invalid row(s): row 6: {reason}. "
        "Fix them or pass --drop-invalid to skip them"
    )
    dropped = ParquetCatalog(path, CatalogSchema(drop_invalid=True), chunk_size=2).load()
    assert dropped.X.shape == (7, 2) and dropped.num_invalid == 1


def test_columns_found_as_for_csv_and_named_when_missing(tmp_path):
    path = _geographic_parquet(tmp_path / "g.parquet", [1.0], [2.0], [6.0])
    assert ParquetCatalog(path).load().X.tolist() == [[2.0, 1.0]]
    with pytest.raises(ValueError) as info:
        ParquetCatalog(path, CatalogSchema(mag_col="magnitude"))
    assert str(info.value) == (
        f"catalog {str(path)!r}: magnitude column 'magnitude' not found; the file has columns "
        "['Latitude', 'Longitude', 'Mag']"
    )
    pq.write_table(pa.table({"lat": [1.0], "lon": [2.0]}), tmp_path / "h.parquet")
    with pytest.raises(ValueError, match=r"h.parquet': no magnitude column found \(looked for"):
        ParquetCatalog(tmp_path / "h.parquet")


@pytest.mark.parametrize(
    "column, kind",
    [
        (pa.array([True, False]), "bool"),  # was read as 1 and 0 degrees, without a word
        (pa.array(["1.0", "2.0"]), "string"),  # numpy's words, no file or column
        (pa.array([[1.0], [2.0]]), "list<element: double>"),
    ],
    ids=["bool", "string", "list"],
)
def test_a_column_that_does_not_hold_numbers_is_named_with_its_type(tmp_path, column, kind):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"Latitude": column, "Longitude": [2.0, 3.0], "Mag": [6.0, 6.5]}),
                   path)  # fmt: skip
    with pytest.raises(ValueError) as info:
        ParquetCatalog(path)
    assert str(info.value) == (
        f"catalog {str(path)!r}: column 'Latitude' holds {kind}, not numbers (integers or floats)"
    )


def test_a_damaged_data_page_is_named_by_row_group_and_column(tmp_path):
    """Zeroed bytes inside the second row group's longitude pages (snappy-compressed, so they
    cannot decode): pyarrow's words alone named neither the file nor the column."""
    rows = 400
    path = _geographic_parquet(tmp_path / "g.parquet", [1.0 + i / rows for i in range(rows)],
                               [2.0 + i / rows for i in range(rows)], [6.0] * rows,
                               row_group_size=rows // 2)  # fmt: skip
    pq.write_table(pq.read_table(path), path, row_group_size=rows // 2, compression="snappy",
                   use_dictionary=False)  # fmt: skip
    page = pq.ParquetFile(path).metadata.row_group(1).column(1).data_page_offset
    data = bytearray(path.read_bytes())
    data[page + 40 : page + 240] = bytes(200)  # past the page header, inside its values
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError) as info:
        list(ParquetCatalog(path).chunks())
    assert str(info.value).startswith(
        f"catalog {str(path)!r}: row group 1, column 'Longitude' cannot be read ("
    )
    assert str(info.value).endswith("); the file is damaged: write it again")


@pytest.mark.parametrize(
    "rank, world_size, message",
    [
        (0, 0, "world_size must be an integer >= 1, got 0"),
        (2, 2, r"rank must be an integer in \[0, 1\], got 2"),
        (-1, 1, r"rank must be an integer in \[0, 0\], got -1"),
        (0, 1.5, "world_size must be an integer >= 1, got 1.5"),
    ],
)
def test_ranks_outside_the_world_are_refused_by_name(tmp_path, rank, world_size, message):
    path = _geographic_parquet(tmp_path / "g.parquet", [1.0], [2.0], [6.0])
    with pytest.raises(ValueError, match=f"^{message}$"):
        ParquetCatalog(path, rank=rank, world_size=world_size)


def test_not_parquet_folder_missing(tmp_path):
    csv = _csv(tmp_path)
    with pytest.raises(ValueError) as info:
        ParquetCatalog(csv)
    assert str(info.value) == f"catalog {str(csv)!r} is not a Parquet file (no PAR1 header)"
    with pytest.raises(ValueError, match="is a folder, not a Parquet file"):
        ParquetCatalog(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        ParquetCatalog(tmp_path / "none.parquet")
    assert not is_parquet(tmp_path / "none.parquet") and not is_parquet(csv)


def test_simulated_catalog_is_planar_and_has_the_truth_of_simulate(tmp_path):
    hp = Hyperparameters(3, mixing=(0.5, 0.3, 0.2), alpha=2.5)
    info = simulate_parquet(tmp_path / "s.parquet", hp, 1000, seed=4, chunk_size=300)
    _, _, _, mu, lam = simulate(hp, 5, seed=4)
    assert info["loc"] == mu.tolist() and info["rate"] == lam.tolist()
    catalog = ParquetCatalog(tmp_path / "s.parquet", chunk_size=128)
    assert catalog.layout == "planar" and catalog.num_rows == 1000
    X, S, *_ = catalog.load()
    assert X.shape == (1000, 2) and bool((S == S.round()).all()) and S.min() >= 0
    # the events follow the model: each is within 6 sd of some centre (sd = tau^-1/2 = 10)
    assert float(torch.cdist(X, mu).min(-1).values.max()) < 6 * hp.tau**-0.5
    with pytest.raises(ValueError, match="is planar"):
        ParquetCatalog(tmp_path / "s.parquet", CatalogSchema(bbox=(0.0, 1.0, 0.0, 1.0)))


def test_shares_of_row_groups_partition_the_catalog(tmp_path):
    simulate_parquet(tmp_path / "s.parquet", Hyperparameters(2), 1000, seed=1, chunk_size=90)
    whole = ParquetCatalog(tmp_path / "s.parquet").load().X
    shares = [ParquetCatalog(tmp_path / "s.parquet", rank=r, world_size=3).load().X
              for r in range(3)]  # fmt: skip
    assert sum(s.shape[0] for s in shares) == 1000
    got = torch.cat(shares)
    assert torch.equal(got[got[:, 0].argsort()], whole[whole[:, 0].argsort()])


def test_a_file_changed_between_passes_is_refused(tmp_path):
    path = tmp_path / "s.parquet"
    simulate_parquet(path, Hyperparameters(2), 100, seed=1)
    catalog = ParquetCatalog(path)
    list(catalog.chunks())
    simulate_parquet(path, Hyperparameters(2), 101, seed=1)
    with pytest.raises(ValueError, match="changed on disk since it was opened"):
        list(catalog.chunks())


def test_sample_is_reproducible_and_about_the_size_asked(tmp_path):
    simulate_parquet(tmp_path / "s.parquet", Hyperparameters(2), 2000, seed=1, chunk_size=300)
    catalog = ParquetCatalog(tmp_path / "s.parquet")
    a, b = catalog.sample(500, seed=3), catalog.sample(500, seed=3)
    assert torch.equal(a[0], b[0])
    # Binomial(2000, 1/4): sd 19.4, so 500 +- 100 is beyond 5 sd
    assert abs(a[0].shape[0] - 500) < 100


def test_sample_does_not_depend_on_the_number_of_processes(tmp_path):
    # the keep decisions are seeded by (seed, row group): the pieces of ranks 0..P-1 joined in
    # row-group order are one process's sample, for every P and chunk size
    simulate_parquet(tmp_path / "s.parquet", Hyperparameters(2), 2000, seed=1, chunk_size=300)
    one = ParquetCatalog(tmp_path / "s.parquet").sample(500, seed=3)
    for world_size, chunk_size in [(2, 300), (3, 128), (7, 1000)]:
        pieces = [
            piece
            for rank in range(world_size)
            for piece in ParquetCatalog(tmp_path / "s.parquet", rank=rank, world_size=world_size,
                                        chunk_size=chunk_size).sample_pieces(500, seed=3)
        ]  # fmt: skip
        X, S = join_pieces(pieces, "s.parquet")
        assert torch.equal(X, one[0]) and torch.equal(S, one[1]), (world_size, chunk_size)
    other = ParquetCatalog(tmp_path / "s.parquet").sample(500, seed=4)
    assert not torch.equal(other[0][:100], one[0][:100])
