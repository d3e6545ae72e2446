"""The one writer of result tables: ``<stem>.md`` (preamble + Markdown table) and ``<stem>.csv``.

Callers build the cells (formatted text for Markdown, raw values for CSV); this module only lays
them out, so every table of the project has the same shape on disk.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """``| a | b |`` lines: the header, the ``|---|`` rule, one line per row."""
    out = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return out


def write_table_files(
    path_stem: Path,
    preamble: Sequence[str],
    md_header: Sequence[str],
    md_rows: Sequence[Sequence[Any]],
    csv_header: Sequence[str],
    csv_rows: Sequence[Sequence[Any]],
) -> tuple[Path, Path]:
    """Write ``<path_stem>.md`` (``preamble`` lines, then the table) and ``<path_stem>.csv``."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    md_path = path_stem.with_name(path_stem.name + ".md")
    md_path.write_text("\n".join([*preamble, *markdown_table(md_header, md_rows)]) + "\n")
    csv_path = path_stem.with_name(path_stem.name + ".csv")
    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(csv_header)
        w.writerows(csv_rows)
    return md_path, csv_path


def csv_num(v: float | None, digits: int = 6) -> str:
    """A CSV number with fixed decimals; empty for a missing or non-finite value."""
    return "" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def fmt_measured(v: float, digits: int = 2, significant: int = 3) -> str:
    """A measured quantity with ``digits`` decimals, or more when that would hide it: at least
    ``significant`` significant digits (a smoke model's 0.0123 G FLOPs prints as ``0.0123``,
    not ``0.01``; 4.4712 G prints as ``4.47``). Zero and non-finite values keep ``digits``."""
    if v == 0 or not math.isfinite(v):
        return f"{v:.{digits}f}"
    decimals = max(digits, significant - 1 - math.floor(math.log10(abs(v))))
    return f"{v:.{decimals}f}"
