"""What makes a figure readable, checked on the figure as drawn (issue #37): nothing outside
the canvas (matplotlib's tight bounding boxes of every axes and of the figure), no legend
over the data of its axes, and every label of an axes that labels two or more artists shown
by some legend of the figure."""

from __future__ import annotations

import numpy as np
from matplotlib.collections import PathCollection
from matplotlib.lines import Line2D

TOLERANCE_PX = 1.0  # rounding of text extents


def _outside(bbox, width: float, height: float) -> bool:
    return (bbox.x0 < -TOLERANCE_PX or bbox.y0 < -TOLERANCE_PX
            or bbox.x1 > width + TOLERANCE_PX or bbox.y1 > height + TOLERANCE_PX)  # fmt: skip


def _data_points(artist) -> np.ndarray | None:
    """The artist's data points in display pixels (line vertices, scatter offsets)."""
    if isinstance(artist, Line2D) and artist.get_visible() and len(artist.get_xydata()):
        return artist.get_transform().transform(artist.get_xydata())
    if isinstance(artist, PathCollection) and artist.get_visible() and len(artist.get_offsets()):
        return artist.get_offset_transform().transform(artist.get_offsets())
    return None


def problems(fig, *, drawn: bool = False) -> list[str]:
    """What is wrong with ``fig`` as it would be saved; empty if it is readable. ``drawn``:
    the figure was just drawn (saved), so its layout is done and no draw is needed."""
    if not drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    found = []
    legends = [ax.get_legend() for ax in fig.axes] + list(fig.legends)
    shown = {t.get_text() for lg in legends if lg is not None for t in lg.get_texts()}
    for i, ax in enumerate(fig.axes):
        name = f"axes {i} ({ax.get_title()[:40]!r})"
        box = ax.get_tightbbox(renderer)
        if box is not None and _outside(box, width, height):
            extent = tuple(round(v) for v in box.extents)
            found.append(f"{name} reaches {extent}, beyond the {width:.0f}x{height:.0f} canvas")
        legend = ax.get_legend()
        labelled = set(ax.get_legend_handles_labels()[1])
        missing = labelled - shown
        if len(labelled) >= 2 and missing:
            found.append(f"{name} labels {sorted(missing)} that no legend of the figure shows")
        if legend is None:
            continue
        inner = legend.get_window_extent(renderer)
        for artist in ax.get_children():
            points = _data_points(artist)
            if points is None:
                continue
            covered = ((points[:, 0] > inner.x0) & (points[:, 0] < inner.x1)
                       & (points[:, 1] > inner.y0) & (points[:, 1] < inner.y1))  # fmt: skip
            if covered.any():
                found.append(f"{name}: its legend covers {int(covered.sum())} point(s) of "
                             f"{str(artist.get_label())!r}")  # fmt: skip
    box = fig.get_tightbbox(renderer)
    if _outside(box.transformed(fig.dpi_scale_trans), width, height):
        found.append(f"the figure's contents reach beyond the {width:.0f}x{height:.0f} canvas")
    return found
