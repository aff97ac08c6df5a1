"""Reading earthquake catalogs: column detection, validation, bounding box, strength."""

from __future__ import annotations

import pytest
import torch

from inference.data import CatalogSchema, load_catalog, parse_bbox
from tests.conftest import shared_data

# Header styles of the two real catalogs (database.csv and the USGS export quakes.csv).
KAGGLE = "Date,Time,Latitude,Longitude,Type,Depth,Magnitude\n"
USGS = "time,latitude,longitude,depth,mag,place\n"


def _write(tmp_path, text, name="c.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_both_header_styles(tmp_path):
    a = _write(tmp_path, KAGGLE + "1/1/1965,00:00,19.2,145.6,Earthquake,131,6.04\n", "a.csv")
    b = _write(tmp_path, USGS + '2013,-20.8,-69.7,56,5.1,"83 km SE of Iquique, Chile"\n', "b.csv")
    ca, cb = load_catalog(a), load_catalog(b)
    torch.testing.assert_close(ca.X, torch.tensor([[145.6, 19.2]]))
    torch.testing.assert_close(cb.X, torch.tensor([[-69.7, -20.8]]))
    assert ca.S.tolist() == [6.0] and cb.S.tolist() == [5.0]


def test_strength_scale_and_named_columns(tmp_path):
    path = _write(tmp_path, "y,x,m\n10,20,6.04\n11,21,5.55\n")
    cat = load_catalog(
        path, CatalogSchema(lat_col="y", lon_col="x", mag_col="m", strength_scale=10)
    )
    assert cat.S.tolist() == [60.0, 56.0]  # round(60.4), round(55.5) (banker's: 56)
    torch.testing.assert_close(cat.magnitude, torch.tensor([6.04, 5.55]))


def test_bbox_selects_a_region(tmp_path):
    path = _write(tmp_path, USGS + "t,10,100,1,6,a\nt,40,140,1,6,b\nt,-5,140,1,6,c\n")
    cat = load_catalog(path, CatalogSchema(bbox=parse_bbox("0,50,120,150")))
    assert cat.X.tolist() == [[140.0, 40.0]] and cat.num_outside == 2


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("", "empty"),
        (USGS, "no data rows"),
        ("lat,lon\n1,2\n", "no magnitude column.*lat"),
        (USGS + "t,abc,1,1,6,a\n", "line 2: latitude 'abc' is not a number"),
        (USGS + "t,1,1,1,,a\n", "line 2: magnitude '' is not a number"),
        (USGS + "t,1,1,1,nan,a\n", "line 2: magnitude 'nan' is not finite"),
        (USGS + "t,95,1,1,6,a\n", "latitude 95.0 is outside"),
        (USGS + "t,1,1,1,-3,a\n", "negative strength"),
    ],
)
def test_bad_catalogs_get_one_clear_error(tmp_path, text, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_catalog(_write(tmp_path, text))


def test_named_column_must_exist(tmp_path):
    with pytest.raises(ValueError, match="latitude column 'LAT' not found"):
        load_catalog(_write(tmp_path, USGS + "t,1,1,1,6,a\n"), CatalogSchema(lat_col="LAT"))


def test_invalid_rows_are_dropped_only_when_asked(tmp_path):
    path = _write(tmp_path, USGS + "t,1,1,1,6,a\nt,,1,1,6,b\nt,2,2,1,7,c\n")
    with pytest.raises(ValueError, match="1 invalid row.*line 3.*--drop-invalid"):
        load_catalog(path)
    cat = load_catalog(path, CatalogSchema(drop_invalid=True))
    assert cat.X.shape == (2, 2) and cat.num_invalid == 1 and cat.num_rows == 3


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,5,0,1", "0,1,170,190", "nan,1,2,3"])
def test_bad_bbox_is_rejected(text):
    with pytest.raises(ValueError, match="bbox"):
        parse_bbox(text)


@pytest.mark.parametrize("name, rows", [("database.csv", 23412), ("quakes.csv", 18334)])
def test_real_catalogs_load_with_default_columns(name, rows):
    path = shared_data(f"earthquakes/{name}")
    cat = load_catalog(path)
    assert cat.num_rows == rows and cat.X.shape == (rows, 2)
    assert torch.all(cat.S >= 5) and torch.all(cat.S <= 9)
