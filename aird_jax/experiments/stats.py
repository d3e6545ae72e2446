"""Summaries over seeds and test sets: mean +- sample std, and bootstrap AUC intervals.

Frames of one video are not independent (same face, same compression, same manipulation), so
intervals of a test set's frame AUC resample whole VIDEOS (a cluster bootstrap,
``bootstrap_video_auc_ci``); resampling frames would make the interval too narrow.
"""

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
    class: how much of a gap between two models the test-set size alone can explain. Only for
    independent examples (one frame per video); frames of videos: ``bootstrap_video_auc_ci``."""
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


def _videos_by_first_frame(video_ids: np.ndarray) -> tuple[np.ndarray, int]:
    """Each frame's video number, videos numbered in order of their first frame."""
    _, first, inverse = np.unique(video_ids, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)], first.size


def bootstrap_video_auc_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    video_ids: np.ndarray,
    n: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """95% percentile bootstrap interval (in %) of the frame AUC, resampling VIDEOS.

    ``scores`` may also be ``[S, N]``: S models (seeds) scored on the same N frames; each
    resample then takes the mean of their S AUCs, giving the interval of a row's mean over
    seeds that the test-set size alone explains.

    Each resample draws, with replacement, as many fake videos as the test set has from its
    fake videos and as many real ones from its real videos (stratified: both classes always
    present), takes all frames of every drawn video (twice if drawn twice) and computes the
    frame AUC. Videos are numbered in order of their first frame and drawn as
    ``rng.choice(fake_videos, n_fake)`` then ``rng.choice(real_videos, n_real)``; with one frame
    per video this is exactly :func:`bootstrap_auc_ci` (same draws, same interval).
    """
    labels = np.asarray(labels).astype(int).reshape(-1)
    scores = np.asarray(scores, np.float64)
    scores = scores.reshape(scores.shape[0] if scores.ndim == 2 else 1, -1)
    vid, n_videos = _videos_by_first_frame(np.asarray(video_ids).reshape(-1))
    if not labels.size == scores.shape[1] == vid.size:
        raise ValueError(
            f"labels, scores and video_ids differ in length: {labels.size}, "
            f"{scores.shape[1]}, {vid.size}"
        )
    frame_order = np.argsort(vid, kind="stable")  # frames grouped by video, in frame order
    counts = np.bincount(vid, minlength=n_videos)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    video_label = labels[frame_order[starts]]
    mixed = np.flatnonzero(labels != video_label[vid])
    if mixed.size:
        bad = np.asarray(video_ids).reshape(-1)[mixed[0]]
        raise ValueError(f"video {bad!r} has frames labelled both real and fake")
    pos, neg = np.flatnonzero(video_label == 1), np.flatnonzero(video_label == 0)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("a bootstrap AUC interval needs real and fake videos")
    rng = np.random.default_rng(seed)
    aucs = []
    for _ in range(n):
        chosen = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        lens = counts[chosen]
        # positions in frame_order of every frame of every chosen video, video by video
        offsets = np.repeat(starts[chosen] - (np.cumsum(lens) - lens), lens)
        idx = frame_order[offsets + np.arange(int(lens.sum()))]
        aucs.append(np.mean([metrics.roc_auc(labels[idx], row[idx]) for row in scores]))
    lo, hi = np.percentile(aucs, [2.5, 97.5])
    return 100 * float(lo), 100 * float(hi)


def bootstrap_result_auc_ci(result: dict, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """``bootstrap_video_auc_ci`` of an evaluation result's per-frame scores (its ``scores``
    file holds ``labels``, ``scores`` and ``video_ids``)."""
    with np.load(result["files"]["scores"]) as z:
        return bootstrap_video_auc_ci(z["labels"], z["scores"], z["video_ids"], n, seed)


def bootstrap_seeds_auc_ci(
    score_files: Sequence[str], n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """The video bootstrap interval of the mean AUC over several seeds' evaluations of one test
    set (their ``scores`` files), the same videos drawn for every seed in each resample."""
    labels, vids, rows = None, None, []
    for f in score_files:
        with np.load(f) as z:
            if labels is None:
                labels, vids = z["labels"], z["video_ids"]
            elif not (np.array_equal(z["labels"], labels) and np.array_equal(z["video_ids"], vids)):
                raise ValueError(f"{f} scores another test set (labels or video ids differ)")
            rows.append(z["scores"].reshape(-1))
    if labels is None:
        return float("nan"), float("nan")
    return bootstrap_video_auc_ci(labels, np.stack(rows), vids, n, seed)
