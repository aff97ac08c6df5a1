"""Any Parquet file as chunks of tensors, for models fitted over data larger than memory
(:func:`inference.cavi.auto_cavi` with ``data=``), read through pyarrow.

Each ``iter()`` is one pass over the row groups this process owns (``rank, rank + world_size,
...``), ``chunk_size`` rows at a time; each chunk is a dict of the model's keyword arguments,
one tensor per argument with the rows first: a column alone gives shape (n,), a list of
columns is stacked into (n, d). Integer columns are read as int64, floating ones in ``dtype``
(float64 by default), boolean ones as bool; a column of anything else (strings, dates, lists)
is refused when the file is opened. Nothing in the file is executed: Parquet holds data only.
A file changed on disk between passes is refused (its size and modification time).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from inference.data.parquet_catalog import check_chunk_size, check_rank, file_stamp, is_parquet
from inference.data.schema import check_catalog_path

__all__ = ["ParquetChunks"]


class ParquetChunks:
    """A Parquet file's rows as chunks (module docstring).

    Args:
        path: the Parquet file.
        columns: argument name -> a column name or a list of column names; None: every column
            of the file under its own name.
        chunk_size: rows per chunk read (>= 1). rank, world_size: the share of this process.
        dtype: the floating dtype of float columns.

    Attributes:
        num_rows: rows in the whole file; row_groups: the row groups this process reads.

    Raises:
        ValueError: a missing file, not Parquet, a column missing or not numbers or booleans,
            a list of columns of mixed kinds, a bad chunk size, rank or world size.
    """

    def __init__(self, path, columns: dict | None = None, *, chunk_size: int = 1 << 20,
                 rank: int = 0, world_size: int = 1,
                 dtype: torch.dtype = torch.float64) -> None:  # fmt: skip
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_catalog_path(path, "Parquet")
        if not is_parquet(path):
            raise ValueError(f"data {str(path)!r} is not a Parquet file (no PAR1 header)")
        check_chunk_size(chunk_size)
        check_rank(rank, world_size)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch dtype, got {dtype!r}")
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(f"data {str(path)!r} cannot be read as Parquet: "
                             f"{str(err).strip()}") from None  # fmt: skip
        self.path, self.dtype, self.chunk_size = str(path), dtype, chunk_size
        schema = self._file.schema_arrow
        if columns is None:
            columns = {name: name for name in schema.names}
        if not isinstance(columns, dict) or not columns:
            raise ValueError(f"columns must be a non-empty dict argument -> column name(s), got "
                             f"{columns!r:.200}")  # fmt: skip
        self.columns = {}
        for arg, names in columns.items():
            listed = [names] if isinstance(names, str) else names
            if not isinstance(arg, str) or not isinstance(listed, (list, tuple)) or not listed:
                raise ValueError(f"columns[{arg!r}] must be a column name or a non-empty list "
                                 f"of them, got {names!r:.200}")  # fmt: skip
            kinds = set()
            for name in listed:
                if name not in schema.names:
                    raise ValueError(f"data {self.path!r} has no column {name!r} (its columns: "
                                     f"{schema.names})")  # fmt: skip
                kinds.add(self._kind(name, schema.field(name).type))
            if len(kinds) > 1:
                raise ValueError(f"columns[{arg!r}] mixes {sorted(kinds)} columns: stack "
                                 "columns of one kind")  # fmt: skip
            self.columns[arg] = (isinstance(names, str), list(listed))
        self.num_rows = self._file.metadata.num_rows
        self.row_groups = list(range(rank, self._file.num_row_groups, world_size))
        self._stamp = file_stamp(path)

    def _kind(self, name: str, kind) -> str:
        import pyarrow as pa

        if pa.types.is_integer(kind):
            return "integer"
        if pa.types.is_floating(kind):
            return "float"
        if pa.types.is_boolean(kind):
            return "boolean"
        raise ValueError(f"data {self.path!r}: column {name!r} holds {kind}, not numbers or "
                         "booleans")  # fmt: skip

    def _tensor(self, array) -> torch.Tensor:
        values = array.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            return torch.from_numpy(values.astype(np.float64)).to(self.dtype)
        if values.dtype.kind == "b":
            return torch.from_numpy(values.copy())
        return torch.from_numpy(values.astype(np.int64))

    def __iter__(self) -> Iterator[dict]:
        """One pass over this process's rows, chunk by chunk."""
        import pyarrow as pa

        if file_stamp(self.path) != self._stamp:
            raise ValueError(f"data {self.path!r} changed on disk since it was opened")
        wanted = sorted({c for _, names in self.columns.values() for c in names})
        for group in self.row_groups:
            batches = self._file.iter_batches(batch_size=self.chunk_size, row_groups=[group],
                                              columns=wanted)  # fmt: skip
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as err:
                    raise ValueError(f"data {self.path!r}: row group {group} cannot be read "
                                     f"({str(err).strip()})") from None  # fmt: skip
                read = {name: self._tensor(batch.column(name)) for name in wanted}
                yield {
                    arg: read[names[0]] if alone else torch.stack([read[n] for n in names], -1)
                    for arg, (alone, names) in self.columns.items()
                }
