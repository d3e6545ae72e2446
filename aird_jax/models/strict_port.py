"""The strict key-path match every weight port shares: each parameter of our model is taken from
exactly one named source tensor of the right shape, and every missing, unexpected or mis-shaped
key is listed (nothing is silently dropped or left at its random initialisation).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from flax import traverse_util


def to_flax(arr: np.ndarray, target_ndim: int) -> np.ndarray:
    """PyTorch layout -> Flax: conv OIHW (depthwise C,1,k,k) -> HWIO (k,k,1,C); Linear
    [out, in] -> Dense [in, out]."""
    if arr.ndim == 4 and target_ndim == 4:
        return np.transpose(arr, (2, 3, 1, 0))
    if arr.ndim == 2 and target_ndim == 2:
        return arr.T
    return arr


def mismatch_error(title: str, problems: dict[str, list[str]]) -> ValueError:
    lines = [title]
    for name, items in problems.items():
        if items:
            more = " ..." if len(items) > 20 else ""
            lines.append(f"  {len(items)} {name} key(s): " + ", ".join(items[:20]) + more)
    return ValueError("\n".join(lines))


def match_state_dict(
    sd: dict[str, np.ndarray],
    template: dict[tuple[str, ...], Any],
    key_of: Callable[[tuple[str, ...]], str],
    ignored: Iterable[str],
    title: str,
    dtype: Any = None,
) -> dict[str, Any]:
    """Nested Flax variables for the flat ``template`` (path -> shape), each leaf the source
    tensor ``sd[key_of(path)]``; source keys matching an ``ignored`` regex may be left over.
    Raises ValueError titled ``title`` listing every problem."""
    flat: dict[tuple[str, ...], np.ndarray] = {}
    missing, bad_shape, used = [], [], set()
    for path, spec in template.items():
        key = key_of(path)
        if key not in sd:
            missing.append(f"{key} (for {'/'.join(path)})")
            continue
        used.add(key)
        arr = to_flax(sd[key], len(spec.shape))
        if arr.shape != spec.shape:
            bad_shape.append(f"{key}: source {sd[key].shape} -> {arr.shape}, expected {spec.shape}")
            continue
        flat[path] = arr if dtype is None else arr.astype(dtype)
    patterns = list(ignored)
    unexpected = sorted(k for k in set(sd) - used if not any(re.match(p, k) for p in patterns))
    if missing or unexpected or bad_shape:
        problems = {"missing": missing, "unexpected": unexpected, "shape mismatch": bad_shape}
        raise mismatch_error(title, problems)
    return traverse_util.unflatten_dict(flat)
