"""Detection metrics on the host (numpy): AUC, EER, accuracy at a threshold, video aggregation.

Conventions used across the project: label 1 = fake, 0 = real; a score is P(fake), so a higher
score means "more likely fake". The paper reports AUC (primary), accuracy at the threshold chosen
on validation, and EER (Section IV-C); video-level scores are the mean of frame scores (IV-B).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _flat(labels: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> tuple[np.ndarray, ...]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    if y.size == 0:
        raise ValueError("no samples: labels and scores are empty")
    return y, s


def _check(labels: Sequence | np.ndarray, scores: Sequence | np.ndarray) -> tuple[np.ndarray, ...]:
    y, s = _flat(labels, scores)
    uniq = np.unique(y)
    if not np.all(np.isin(uniq, (0, 1))):
        raise ValueError(f"labels must be 0 (real) or 1 (fake), got values {uniq.tolist()}")
    if uniq.size < 2:
        raise ValueError(
            f"only one class present (label {int(uniq[0])} for all {y.size} samples): AUC, EER "
            "and thresholds need both real and fake samples"
        )
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or Inf")
    return y.astype(np.int64), s


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points ``(fpr, tpr, thresholds)``; thresholds decrease, the first is ``+inf``.

    A sample is called fake when ``score >= threshold``. Tied scores form one point.
    """
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # Last index of each run of equal scores: one ROC point per distinct threshold.
    distinct = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    n_pos, n_neg = y.sum(), y.size - y.sum()
    tpr = np.r_[0.0, tps / n_pos]
    fpr = np.r_[0.0, fps / n_neg]
    thresholds = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thresholds


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (trapezoidal over distinct thresholds; ties count one half)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def eer(labels, scores) -> float:
    """Equal error rate: the point where FPR = FNR, linearly interpolated between ROC points."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increases from -1 (threshold +inf) to +1 (lowest threshold)
    k = int(np.argmax(diff >= 0))
    if diff[k] == 0 or k == 0:
        return float(fpr[k])
    # Intersect the segment (k-1, k) of FPR(t) and FNR(t) linearly.
    d0, d1 = diff[k - 1], diff[k]
    a = d0 / (d0 - d1)
    return float(fpr[k - 1] + a * (fpr[k] - fpr[k - 1]))


def best_threshold(labels, scores) -> float:
    """Threshold maximising Youden's J = TPR - FPR on the ROC (chosen on validation data).

    Among equal J the highest threshold wins (fewest false alarms). The returned value is a
    score in the data, so ``score >= threshold`` reproduces the chosen ROC point.
    """
    fpr, tpr, thr = roc_curve(labels, scores)
    j = tpr[1:] - fpr[1:]  # skip the +inf point, which predicts nothing as fake
    return float(thr[1:][int(np.argmax(j))])


def accuracy(labels, scores, threshold: float) -> float:
    """Fraction correct when ``score >= threshold`` means fake."""
    y, s = _flat(labels, scores)
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def aggregate_by_video(video_ids, labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video label and mean frame score, in order of first appearance of each video.

    A video whose frames disagree on the label is an error (it would mean a broken manifest).
    """
    v = np.asarray(video_ids).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (v.shape == y.shape == s.shape):
        raise ValueError(
            f"video_ids, labels and scores differ in length: {v.size}, {y.size}, {s.size}"
        )
    uniq, first, inverse = np.unique(v, return_index=True, return_inverse=True)
    counts = np.bincount(inverse)
    mean_scores = np.bincount(inverse, weights=s) / counts
    lab_min = np.full(uniq.size, np.iinfo(np.int64).max)
    lab_max = np.full(uniq.size, np.iinfo(np.int64).min)
    np.minimum.at(lab_min, inverse, y.astype(np.int64))
    np.maximum.at(lab_max, inverse, y.astype(np.int64))
    bad = np.nonzero(lab_min != lab_max)[0]
    if bad.size:
        raise ValueError(f"frames of video {uniq[bad[0]]!r} have different labels")
    order = np.argsort(first)
    return uniq[order], lab_min[order], mean_scores[order]


def summarize(labels, scores, threshold: float | None = None) -> dict[str, float]:
    """AUC, EER and accuracy (at ``threshold``, or at the best threshold on these data)."""
    y, s = _check(labels, scores)
    thr = best_threshold(y, s) if threshold is None else float(threshold)
    return {
        "auc": roc_auc(y, s),
        "eer": eer(y, s),
        "acc": accuracy(y, s, thr),
        "threshold": thr,
        "n": int(y.size),
        "n_pos": int(y.sum()),
    }
