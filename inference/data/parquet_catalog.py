"""Earthquake catalogs in Parquet (through pyarrow): written and read chunk by chunk.

A Parquet catalog is read one record batch at a time (``chunk_size`` rows, within the row
groups this process owns), so a sweep over 10^8 events never holds more than one chunk. Two
column layouts are understood:

- **geographic** (what :func:`convert_csv` writes, and any Parquet file with latitude,
  longitude and magnitude columns): the columns are found, and every row is checked, by the
  same :class:`~inference.data.schema.CatalogSchema` and rules as
  :func:`inference.data.load_catalog` applies to a CSV; ``X = (longitude, latitude)``.
- **planar** (what :func:`simulate_parquet` writes): columns ``x1, x2, s`` hold the model's
  coordinates and integer strengths as they are (a simulated catalog is not on the globe:
  its coordinates may leave [-90, 90]); rows are checked as :func:`analytic.earthquake.
  check_data` checks data.

Files are written to a temporary name in the destination folder and renamed when complete, so
an interrupted or refused conversion leaves nothing behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from analytic.earthquake import MAX_LOCATION, MAX_STRENGTH, Hyperparameters
from inference.data.atomic import replaced_atomically
from inference.data.csv_catalog import Catalog, iter_csv_rows, not_utf8_error
from inference.data.schema import CatalogSchema, check_catalog_path, invalid_rows_error

if TYPE_CHECKING:  # pyarrow is imported where a Parquet file is read or written
    import pyarrow as pa
from ppl_models.earthquake import simulate_chunks

__all__ = [
    "GEOGRAPHIC_COLUMNS",
    "PLANAR_COLUMNS",
    "ParquetCatalog",
    "convert_csv",
    "is_parquet",
    "join_pieces",
    "simulate_parquet",
]

GEOGRAPHIC_COLUMNS = ("latitude", "longitude", "magnitude")
PLANAR_COLUMNS = ("x1", "x2", "s")
_PARQUET_MAGIC = b"PAR1"


def is_parquet(path) -> bool:
    """Whether ``path`` starts with Parquet's magic bytes ``PAR1`` (the suffix is not trusted)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _PARQUET_MAGIC
    except OSError:
        return False


def _write_batches(
    path,
    columns: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    total: int | None,
    desc: str,
    progress: bool,
) -> int:
    """Write record batches (one row group each) to ``path`` through a temporary file renamed
    at the end (:func:`inference.data.atomic.replaced_atomically`); nothing is left behind on
    an error. Returns the rows written."""
    import pyarrow.parquet as pq

    written = 0
    with replaced_atomically(path) as tmp:
        with pq.ParquetWriter(tmp, columns) as writer, tqdm(
            total=total, desc=desc, unit="event", unit_scale=True, leave=False,
            disable=not progress,
        ) as bar:  # fmt: skip
            for batch in batches:
                writer.write_batch(batch, row_group_size=max(batch.num_rows, 1))
                written += batch.num_rows
                bar.update(batch.num_rows)
    return written


def convert_csv(
    csv_path,
    out_path,
    schema: CatalogSchema | None = None,
    *,
    chunk_size: int = 1 << 20,
    progress: bool = False,
) -> dict:
    """Convert a CSV catalog to a geographic Parquet catalog (columns ``latitude, longitude,
    magnitude``, float64, one row group per ``chunk_size`` events), streaming the CSV.

    Rows are checked by the rules of :func:`inference.data.load_catalog` with the same
    ``schema`` (its ``strength_scale`` checks that every magnitude gives a valid strength; the
    file keeps the magnitudes, so the strength scale is chosen again when the file is read).
    Invalid rows stop the conversion (listing the first few) unless ``drop_invalid``; events
    outside ``bbox`` are not written. ``progress``: a tqdm bar of the events written.

    Returns:
        counts: ``num_rows``, ``num_written``, ``num_invalid``, ``num_outside``.
    """
    import pyarrow as pa

    schema = CatalogSchema() if schema is None else schema
    check_catalog_path(csv_path)
    check_chunk_size(chunk_size)
    counts = {"num_rows": 0, "num_invalid": 0, "num_outside": 0}
    bad: list[str] = []
    columns = pa.schema([(name, pa.float64()) for name in GEOGRAPHIC_COLUMNS])

    def batches() -> Iterator[pa.RecordBatch]:
        rows: list[tuple[float, float, float]] = []
        for line, parsed in iter_csv_rows(csv_path, schema):
            counts["num_rows"] += 1
            if isinstance(parsed, str):
                bad.append(f"line {line}: {parsed}")
                continue
            lat, lon, mag, _ = parsed
            if not schema.inside(lat, lon):
                counts["num_outside"] += 1
                continue
            rows.append((lat, lon, mag))
            if len(rows) == chunk_size:
                yield pa.RecordBatch.from_arrays(list(map(pa.array, zip(*rows))), schema=columns)
                rows = []
        if rows:
            yield pa.RecordBatch.from_arrays(list(map(pa.array, zip(*rows))), schema=columns)
        if bad and not schema.drop_invalid:
            raise invalid_rows_error(csv_path, bad)
        if counts["num_rows"] == 0:
            raise ValueError(f"catalog {str(csv_path)!r} has a header but no data rows")

    try:
        written = _write_batches(out_path, columns, batches(), None, "convert", progress)
    except UnicodeDecodeError as err:
        raise not_utf8_error(csv_path, err) from None
    except ValueError as err:
        message = str(err)
        if not message.startswith("catalog "):
            message = f"catalog {str(csv_path)!r}: {message}"
        raise ValueError(message) from None
    counts["num_invalid"] = len(bad)
    return {**counts, "num_written": written}


def simulate_parquet(
    out_path,
    hp: Hyperparameters,
    num_events: int,
    *,
    seed: int = 0,
    chunk_size: int = 1 << 20,
    dtype: torch.dtype = torch.float64,
    progress: bool = False,
) -> dict:
    """Write a planar catalog of ``num_events`` drawn from the model's prior predictive
    (:func:`ppl_models.earthquake.simulate_chunks`), one row group per chunk, never holding
    more than one chunk. ``dtype`` is the storage type of ``x1, x2`` (``s`` is int64);
    ``progress``: a tqdm bar.

    Returns:
        ``{"num_written": N, "loc": mu as lists, "rate": lambda as a list}`` (the truth).
    """
    import pyarrow as pa

    check_chunk_size(chunk_size)
    arrow_float = {torch.float64: pa.float64(), torch.float32: pa.float32()}.get(dtype)
    if arrow_float is None:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    mu, lam, chunks = simulate_chunks(hp, num_events, seed, chunk_size, dtype=dtype)
    columns = pa.schema([("x1", arrow_float), ("x2", arrow_float), ("s", pa.int64())])

    def batches() -> Iterator[pa.RecordBatch]:
        for X, S in chunks:
            X = X.numpy()
            yield pa.RecordBatch.from_arrays(
                [pa.array(X[:, 0]), pa.array(X[:, 1]), pa.array(S.numpy().astype(np.int64))],
                schema=columns,
            )

    written = _write_batches(out_path, columns, batches(), num_events, "simulate", progress)
    return {"num_written": written, "loc": mu.tolist(), "rate": lam.tolist()}


def file_stamp(path) -> tuple[int, int]:
    """(size, modification time in ns) of a file: a change between passes is an error."""
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def check_rank(rank, world_size) -> None:
    """``world_size`` processes share the row groups; ``rank`` is this one, in [0, world_size)."""
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer >= 1, got {world_size!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size - 1}], got {rank!r}")


def check_chunk_size(chunk_size) -> None:
    """``chunk_size`` rows read at a time, an integer >= 1."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


class ParquetCatalog:
    """A Parquet earthquake catalog, read in chunks (module docstring for the two layouts).

    Args:
        path: the Parquet file.
        schema: the columns, strength scale, bounding box and invalid-row rule, as for
            :func:`inference.data.load_catalog` (a planar file takes only ``drop_invalid``).
        chunk_size: rows per chunk read.
        rank, world_size: this process reads row groups ``rank, rank + world_size, ...``.

    Attributes:
        num_rows: rows in the whole file. num_row_groups: its row groups; row_groups: those
            this process reads. layout: "geographic" or "planar".
        num_invalid, num_outside: rows of this process's share dropped as invalid (with
            ``drop_invalid``) or outside ``bbox``, counted by the last full pass.

    Raises:
        ValueError: a missing file, a folder, a file that is not Parquet, missing columns.
    """

    def __init__(
        self,
        path,
        schema: CatalogSchema | None = None,
        *,
        chunk_size: int = 1 << 20,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_catalog_path(path, "Parquet")
        if not is_parquet(path):
            raise ValueError(f"catalog {str(path)!r} is not a Parquet file (no PAR1 header)")
        schema = CatalogSchema() if schema is None else schema
        check_chunk_size(chunk_size)
        try:
            self._file = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as err:
            raise ValueError(
                f"catalog {str(path)!r} cannot be read as Parquet: {str(err).strip()}"
            ) from None
        self.path = str(path)
        names = self._file.schema_arrow.names
        given = (schema.lat_col, schema.lon_col, schema.mag_col)
        if all(c in names for c in PLANAR_COLUMNS) and given == (None, None, None):
            self.layout, self.columns = "planar", list(PLANAR_COLUMNS)
            if schema.bbox is not None:
                raise ValueError(f"catalog {self.path!r} is planar (x1, x2, s): no bbox applies")
        else:
            self.layout = "geographic"
            try:
                planar = f", or the planar columns {list(PLANAR_COLUMNS)}"
                self.columns = [names[i] for i in schema.find_columns(names, planar)]
            except ValueError as err:
                raise ValueError(f"catalog {self.path!r}: {err}") from None
        self._check_types()
        self.schema = schema
        self.chunk_size = chunk_size
        self.num_rows = self._file.metadata.num_rows
        self.num_row_groups = self._file.num_row_groups
        check_rank(rank, world_size)
        self.row_groups = list(range(rank, self.num_row_groups, world_size))
        self.num_invalid = self.num_outside = 0
        self._stamp = file_stamp(path)
        self._clean = False  # a full pass found no invalid row: later passes skip the rules

    def _check_types(self) -> None:
        """Each column read must hold plain numbers: integers or floats, not booleans (a bool
        latitude read as 0 and 1 degrees), strings, lists or dates."""
        import pyarrow as pa

        for name in self.columns:
            kind = self._file.schema_arrow.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)):
                raise ValueError(
                    f"catalog {self.path!r}: column {name!r} holds {kind}, not numbers "
                    "(integers or floats)"
                )

    def _rules(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> list:
        """The row rules for one chunk's columns: (mask of rows breaking it, reason, column)."""
        if self.layout == "planar":
            x_ok = lambda v: torch.isfinite(v) & (v.abs() <= MAX_LOCATION)  # noqa: E731
            return [
                (~x_ok(a), lambda v: f"x1 {v} is not finite or beyond {MAX_LOCATION:g}", a),
                (~x_ok(b), lambda v: f"x2 {v} is not finite or beyond {MAX_LOCATION:g}", b),
                (~((c >= 0) & (c <= MAX_STRENGTH)), lambda v: f"s {v} is outside [0, 2**53]", c),
                (c != torch.round(c), lambda v: f"s {v} is not an integer", c),
            ]
        scale = self.schema.strength_scale
        scaled = scale * c
        return [
            (~torch.isfinite(a), lambda v: f"latitude {v} is not finite", a),
            (~torch.isfinite(b), lambda v: f"longitude {v} is not finite", b),
            (~torch.isfinite(c), lambda v: f"magnitude {v} is not finite", c),
            (a.abs() > 90, lambda v: f"latitude {v} is outside [-90, 90]", a),
            (b.abs() > 180, lambda v: f"longitude {v} is outside [-180, 180]", b),
            (
                scaled.abs() > MAX_STRENGTH,
                lambda v: (
                    f"magnitude {v} times strength scale {scale:g} is "
                    "beyond 2**53 (strengths must be integers float64 holds exactly)"
                ),
                c,
            ),
            (torch.round(scaled) < 0, lambda v: f"magnitude {v} gives a negative strength", c),
        ]

    def _batches(self) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
        """(row group, index of the chunk's first row in the file, its three columns as
        float64)."""
        meta = self._file.metadata
        starts = np.cumsum([0] + [meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
        for group in self.row_groups:
            offset = int(starts[group])
            for batch in self._group_batches(group):
                cols = [
                    torch.from_numpy(
                        batch.column(i).to_numpy(zero_copy_only=False).astype(np.float64)
                    )
                    for i in range(3)
                ]
                yield group, offset, cols
                offset += batch.num_rows

    def _group_batches(self, group: int) -> Iterator[pa.RecordBatch]:
        """The batches of one row group; a page that cannot be decoded is named by file, row
        group and column (each column is read alone to find which)."""
        import pyarrow as pa

        batches = self._file.iter_batches(
            batch_size=self.chunk_size, row_groups=[group], columns=self.columns
        )
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as err:
                raise ValueError(self._corrupt(group, err)) from None
            yield batch

    def _corrupt(self, group: int, err: Exception) -> str:
        import pyarrow as pa

        for name in self.columns:
            try:
                self._file.read_row_group(group, columns=[name])
            except (pa.ArrowException, OSError) as column_err:
                return (
                    f"catalog {self.path!r}: row group {group}, column {name!r} cannot be "
                    f"read ({str(column_err).strip()}); the file is damaged: write it again"
                )
        return f"catalog {self.path!r}: row group {group} cannot be read ({str(err).strip()})"

    def chunks(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass over this process's rows: ``(X (n, 2), S (n,))`` float64 chunks, checked.

        Raises:
            ValueError: invalid rows (without ``drop_invalid``), naming the file, the row
                numbers (0-based, in the file) and the reasons of the first few.
        """
        for _, X, S, _ in self._checked():
            yield X, S

    def _checked(self) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """:meth:`chunks` with each chunk's row group and magnitudes (the strengths, if
        planar)."""
        if file_stamp(self.path) != self._stamp:
            raise ValueError(f"catalog {self.path!r} changed on disk since it was opened")
        num_invalid = num_outside = 0
        for group, offset, (a, b, c) in self._batches():
            bad = None
            if not self._clean:
                rules = self._rules(a, b, c)
                bad = torch.zeros_like(a, dtype=torch.bool)
                for mask, _, _ in rules:
                    bad |= mask
            if bad is not None and bool(bad.any()):
                if not self.schema.drop_invalid:
                    raise invalid_rows_error(self.path, self._listed(offset, bad, rules))
                num_invalid += int(bad.sum())
                a, b, c = a[~bad], b[~bad], c[~bad]
            if self.layout == "planar":
                yield group, torch.stack([a, b], dim=-1), c, c
                continue
            X, S = torch.stack([b, a], dim=-1), torch.round(self.schema.strength_scale * c)
            if self.schema.bbox is not None:
                inside = self.schema.inside(a, b)
                num_outside += int((~inside).sum())
                X, S, c = X[inside], S[inside], c[inside]
            yield group, X, S, c
        self.num_invalid, self.num_outside = num_invalid, num_outside
        self._clean = num_invalid == 0

    def _listed(self, offset: int, bad: torch.Tensor, rules: list) -> list[str]:
        """The reason of each bad row of a chunk (the first rule it breaks), rows numbered in
        the file; the count is the chunk's (later chunks are not read)."""
        reasons = []
        for i in bad.nonzero().flatten().tolist():
            mask, reason, column = next(rule for rule in rules if bool(rule[0][i]))
            reasons.append(f"row {offset + i}: {reason(column[i].item())}")
        return reasons

    def load(self) -> Catalog:
        """This process's rows in memory, as :func:`inference.data.load_catalog` returns."""
        chunks = [chunk[1:] for chunk in self._checked()]
        X, S, magnitude = (torch.cat(parts) for parts in zip(*chunks)) if chunks else [None] * 3
        if X is None or X.shape[0] == 0:
            where = " inside bbox" if self.schema.bbox is not None else ""
            raise ValueError(f"no valid event of {self.path!r}{where}")
        return Catalog(X, S, magnitude, self.num_rows, self.num_invalid, self.num_outside)

    def sample_pieces(
        self, num_events: int, seed: int
    ) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
        """About ``num_events`` events of the whole file drawn uniformly, in one pass over this
        process's share, as ``(row group, X, S)`` pieces in file order: each valid row is kept
        with probability min(1, num_events / num_rows), decided by a generator seeded by
        ``(seed, row group)`` (``numpy.random.default_rng``). So the union of the pieces of
        every process is the sample one process draws from the whole file, whatever the
        number of processes: the seeding of CAVI does not depend on it."""
        keep = min(1.0, num_events / max(self.num_rows, 1))
        pieces, generators = [], {}
        for group, X, S, _ in self._checked():
            rng = generators.setdefault(group, np.random.default_rng([seed, group]))
            chosen = torch.from_numpy(rng.random(X.shape[0]) < keep)
            pieces.append((group, X[chosen], S[chosen]))
        return pieces

    def sample(self, num_events: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`sample_pieces` joined: ``(X (M, 2), S (M,))``, the events to seed CAVI's
        k-means++ from. Raises ValueError if no event was drawn."""
        return join_pieces(self.sample_pieces(num_events, seed), self.path)


def join_pieces(pieces, path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row group, X, S)`` pieces (from one or several processes) joined in row-group order
    (a stable sort: the pieces of one group keep their order)."""
    pieces = sorted(pieces, key=lambda piece: piece[0])
    X = torch.cat([piece[1] for piece in pieces]) if pieces else torch.zeros(0, 2)
    S = torch.cat([piece[2] for piece in pieces]) if pieces else torch.zeros(0)
    if X.shape[0] == 0:
        raise ValueError(f"no valid event of {str(path)!r} to seed from")
    return X, S
