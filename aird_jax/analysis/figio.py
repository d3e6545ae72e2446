"""Writing a figure: a PNG and, next to it, a JSON of the numbers it shows."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # the Agg backend: set in aird_jax/analysis/__init__.py
import numpy as np

DPI = 110


def _plain(x: Any) -> Any:
    """JSON-able form of numpy scalars/arrays (non-finite floats become null)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        return _plain(x.item())
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def save(fig: plt.Figure, stem: Path, numbers: dict[str, Any]) -> tuple[Path, Path]:
    """``stem.png`` and ``stem.json``; closes ``fig``. Returns both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, js = stem.with_suffix(".png"), stem.with_suffix(".json")
    fig.savefig(png, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    tmp = js.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_plain(numbers), indent=1))
    os.replace(tmp, js)
    return png, js
