"""Data readers: earthquake catalogs in CSV (:mod:`.csv_catalog`) and Parquet
(:mod:`.parquet_catalog`, read and written in chunks); any Parquet file as chunks of tensors
(:mod:`.parquet_chunks`), both through one
:class:`~inference.data.schema.CatalogSchema`; MNIST through torchvision (:mod:`.mnist`); files
replaced whole or not at all (:mod:`.atomic`)."""

from inference.data.atomic import remove_stale_temporaries as remove_stale_temporaries
from inference.data.atomic import replaced_atomically as replaced_atomically
from inference.data.csv_catalog import Catalog as Catalog
from inference.data.csv_catalog import load_catalog as load_catalog
from inference.data.mnist import MNIST_FILES as MNIST_FILES
from inference.data.mnist import Mnist as Mnist
from inference.data.mnist import binarize as binarize
from inference.data.mnist import default_cache_dir as default_cache_dir
from inference.data.mnist import load_mnist as load_mnist
from inference.data.parquet_catalog import GEOGRAPHIC_COLUMNS as GEOGRAPHIC_COLUMNS
from inference.data.parquet_catalog import PLANAR_COLUMNS as PLANAR_COLUMNS
from inference.data.parquet_catalog import ParquetCatalog as ParquetCatalog
from inference.data.parquet_catalog import convert_csv as convert_csv
from inference.data.parquet_catalog import is_parquet as is_parquet
from inference.data.parquet_catalog import join_pieces as join_pieces
from inference.data.parquet_catalog import simulate_parquet as simulate_parquet
from inference.data.parquet_chunks import ParquetChunks as ParquetChunks
from inference.data.schema import CatalogSchema as CatalogSchema
from inference.data.schema import parse_bbox as parse_bbox

__all__ = [
    "GEOGRAPHIC_COLUMNS",
    "MNIST_FILES",
    "PLANAR_COLUMNS",
    "Catalog",
    "CatalogSchema",
    "Mnist",
    "ParquetCatalog",
    "ParquetChunks",
    "binarize",
    "convert_csv",
    "default_cache_dir",
    "is_parquet",
    "join_pieces",
    "load_catalog",
    "load_mnist",
    "parse_bbox",
    "remove_stale_temporaries",
    "replaced_atomically",
    "simulate_parquet",
]
