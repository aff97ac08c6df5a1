"""Plain-text tables for the one-screen summaries every subcommand prints."""

from __future__ import annotations

__all__ = ["format_table"]


def format_table(rows: list[list[str]]) -> str:
    """Right-aligned columns; the first row is the header, underlined with dashes."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
