"""Runs ``vilab catalog``: its flags, and the description ``--help`` shows, are in
:mod:`vilab.catalog.flags`."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import torch

from inference.data import convert_csv, simulate_parquet
from inference.data.fdsn import MAX_PAGE, USGS_FDSN, fetch_events
from vilab.earthquake.flags import hyperparameters
from vilab.flags import (
    catalog_schema,
    check_not_an_input,
    check_output_file,
)
from vilab.io import atomic_write_json

__all__ = ["run"]


def _check_disk(path: str, num_events: int, row_bytes: int) -> None:
    """Refuse a simulation whose uncompressed columns (``row_bytes`` an event) exceed the free
    space of the output's folder, naming the flag, before drawing anything."""
    folder = Path(path).resolve().parent
    free = shutil.disk_usage(folder).free
    need = num_events * row_bytes
    if need > free:
        raise ValueError(
            f"--num-events {num_events} writes up to {need / 2**30:.3g} GiB of columns, more "
            f"than the {free / 2**30:.3g} GiB free in {folder}"
        )


def run(args: argparse.Namespace) -> dict:
    """Fetch, convert or simulate; print a one-line summary; return it."""
    output = args.csv if args.action == "fetch" else args.parquet
    check_output_file("OUT.csv" if args.action == "fetch" else "OUT.parquet", output)
    if args.json is not None:
        check_output_file("--json", args.json)
    if args.action == "fetch":
        check_not_an_input({"--json": args.json}, {"OUT.csv": args.csv})
        page_size = MAX_PAGE if args.page_size is None else args.page_size
        summary = fetch_events(args.csv, start=args.start, end=args.end,
                               min_magnitude=args.min_magnitude, bbox=args.bbox,
                               url=args.url or USGS_FDSN, page_size=page_size,
                               retries=args.retries, progress=not args.quiet)  # fmt: skip
        print(f"wrote {summary['num_events']} events to {args.csv} "
              f"({summary['num_pages']} request(s) to {summary['url']})")  # fmt: skip
    elif args.action == "convert":
        schema = catalog_schema(args)
        outputs = {"OUT.parquet": args.parquet, "--json": args.json}
        check_not_an_input(outputs, {"IN.csv": args.csv})
        summary = convert_csv(
            args.csv, args.parquet, schema, chunk_size=args.chunk_size, progress=not args.quiet
        )
        print(
            f"wrote {summary['num_written']} events to {args.parquet} "
            f"({summary['num_rows']} rows read, {summary['num_invalid']} invalid dropped, "
            f"{summary['num_outside']} outside the box)"
        )
    else:
        hp = hyperparameters(args)
        dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
        _check_disk(args.parquet, args.num_events, 2 * dtype.itemsize + 8)
        summary = simulate_parquet(args.parquet, hp, args.num_events, seed=args.seed,
                                   chunk_size=args.chunk_size, dtype=dtype,
                                   progress=not args.quiet)  # fmt: skip
        print(f"wrote {summary['num_written']} simulated events to {args.parquet}")
    summary = {"action": args.action, "file": str(output), **summary}
    if args.json is not None:
        atomic_write_json(args.json, summary)
    return summary
