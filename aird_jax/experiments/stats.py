"""Summaries over seeds and test sets: mean +- sample std, and a bootstrap AUC interval."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from aird_jax import metrics


def mean_std(vals: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof 1; nan for a single value; both nan for none)."""
    a = np.asarray(vals, dtype=np.float64)
    if a.size == 0:
        return float("nan"), float("nan")
    return float(a.mean()), (float(a.std(ddof=1)) if a.size > 1 else float("nan"))


def fmt_mean_std(vals: Sequence[float], digits: int = 1) -> str:
    """``"91.2 ± 0.4"`` over seeds; ``"91.2"`` for one seed; ``"nan"`` if any is not finite."""
    m, s = mean_std(vals)
    if not math.isfinite(m):
        return "nan"
    return f"{m:.{digits}f}" if not math.isfinite(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def bootstrap_auc_ci(
    labels: np.ndarray, scores: np.ndarray, n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile bootstrap interval of the AUC in %, resampling examples stratified by
    class: how much of a gap between two models the test-set size alone can explain."""
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, np.float64)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        i = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        aucs.append(metrics.roc_auc(labels[i], scores[i]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return 100 * float(lo), 100 * float(hi)


def bootstrap_frame_auc_ci(result: dict, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """``bootstrap_auc_ci`` of an evaluation result's per-frame scores (its ``scores`` file)."""
    with np.load(result["files"]["scores"]) as z:
        return bootstrap_auc_ci(z["labels"], z["scores"], n, seed)
