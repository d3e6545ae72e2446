"""Detection metrics on the host: AUC, AP, EER, TPR at a fixed FPR, accuracy, video aggregation.

Conventions used across the project: label 1 = fake, 0 = real; a score is P(fake), so a higher
score means "more likely fake". The paper reports AUC (primary), accuracy at the threshold chosen
on validation, and EER (Section IV-C); video-level scores are the mean of frame scores (IV-B).
Average precision and TPR at FPR 1% / 0.1% are what DeepfakeBench-style tables also report.

The ROC curve, its area and average precision come from ``sklearn.metrics`` (a declared runtime
dependency, the implementation every paper's numbers are computed with); EER, the validation
threshold, TPR at a fixed FPR and video aggregation are computed here on top of that ROC.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm


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

    A sample is called fake when ``score >= threshold``. Tied scores form one point; every
    distinct score is a point (no intermediate point is dropped).
    """
    y, s = _check(labels, scores)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    thr = np.asarray(thr, np.float64).copy()
    thr[0] = np.inf  # sklearn < 1.3 wrote max(score) + 1 here
    return np.asarray(fpr, np.float64), np.asarray(tpr, np.float64), thr


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (ties count one half)."""
    y, s = _check(labels, scores)
    return float(skm.roc_auc_score(y, s))


def average_precision(labels, scores) -> float:
    """Average precision, fake = positive: sum over thresholds of (R_k - R_{k-1}) * P_k (the
    step-wise area under the precision-recall curve, no interpolation; as scikit-learn)."""
    y, s = _check(labels, scores)
    return float(skm.average_precision_score(y, s))


def tpr_at_fpr(labels, scores, max_fpr: float) -> float:
    """The highest TPR of an operating point whose FPR is at most ``max_fpr`` (no
    interpolation between ROC points: a threshold that achieves it exists in the data)."""
    if not 0.0 <= float(max_fpr) <= 1.0:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(tpr[fpr <= float(max_fpr) + 1e-12].max())


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


def per_method_auc(labels, scores, methods) -> dict[str, float]:
    """AUC of every real sample against the fakes of one method, per method (sorted by name).

    ``methods`` names each sample's manipulation (the record's ``method``; reals' entries are
    ignored). A method with no fake, or no real sample at all, gives NaN.
    """
    y, s = _flat(labels, scores)
    m = np.asarray(methods).astype(str).reshape(-1)
    if m.shape != y.shape:
        raise ValueError(f"labels and methods differ in length: {y.size} vs {m.size}")
    real = y == 0
    out: dict[str, float] = {}
    for name in sorted(set(m[y == 1].tolist())):
        keep = real | ((y == 1) & (m == name))
        out[name] = roc_auc(y[keep], s[keep]) if real.any() else float("nan")
    return out


# FPRs at which the TPR is reported (DeepfakeBench reports TPR at FPR 1% and 0.1%).
TPR_AT_FPR = {"tpr@fpr1%": 0.01, "tpr@fpr0.1%": 0.001}


def summarize(labels, scores, threshold: float | None = None) -> dict[str, float]:
    """AUC, AP, EER, TPR at FPR 1% / 0.1% and accuracy (at ``threshold``, or at the best
    threshold on these data)."""
    y, s = _check(labels, scores)
    thr = best_threshold(y, s) if threshold is None else float(threshold)
    return {
        "auc": roc_auc(y, s),
        "ap": average_precision(y, s),
        "eer": eer(y, s),
        **{k: tpr_at_fpr(y, s, f) for k, f in TPR_AT_FPR.items()},
        "acc": accuracy(y, s, thr),
        "threshold": thr,
        "n": int(y.size),
        "n_pos": int(y.sum()),
    }
