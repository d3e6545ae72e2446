"""Metrics against naive, independent computations (pairwise AUC, threshold loops) and
hand-worked cases. metrics.py takes ROC/AUC/AP from scikit-learn, so sklearn is NOT the
reference here: every expected value is computed by a loop written from the definition."""

from __future__ import annotations

import numpy as np
import pytest

from aird_jax import metrics


def _naive_auc(y, s) -> float:
    """P(score of a fake > score of a real) + 1/2 P(tie), over all pairs (O(n^2))."""
    y, s = np.asarray(y), np.asarray(s, np.float64)
    pos, neg = s[y == 1], s[y == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _naive_roc(y, s):
    """One point per distinct score t (descending), fake := score >= t; plus (0, 0) at +inf."""
    y, s = np.asarray(y), np.asarray(s, np.float64)
    fpr, tpr, thr = [0.0], [0.0], [np.inf]
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tpr.append(np.sum(pred & (y == 1)) / np.sum(y == 1))
        fpr.append(np.sum(pred & (y == 0)) / np.sum(y == 0))
        thr.append(t)
    return np.array(fpr), np.array(tpr), np.array(thr)


def _naive_ap(y, s) -> float:
    """sum_k (R_k - R_{k-1}) P_k over distinct thresholds, descending (the step-wise AP)."""
    y, s = np.asarray(y), np.asarray(s, np.float64)
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = np.sum(pred & (y == 1))
        r, p = tp / np.sum(y == 1), tp / np.sum(pred)
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def _naive_tpr_at_fpr(y, s, target) -> float:
    fpr, tpr, _ = _naive_roc(y, s)
    return max(t for f, t in zip(fpr, tpr) if f <= target)


@pytest.mark.parametrize("seed,n,decimals", [(0, 300, 6), (1, 400, 2), (2, 57, 1)])
def test_auc_roc_ap_match_naive_definitions(seed, n, decimals):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n) + 0.4 * y, decimals)  # rounding makes ties
    assert metrics.roc_auc(y, s) == pytest.approx(_naive_auc(y, s), abs=1e-12)
    fpr, tpr, thr = metrics.roc_curve(y, s)
    f2, t2, th2 = _naive_roc(y, s)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr, th2)
    assert metrics.average_precision(y, s) == pytest.approx(_naive_ap(y, s), abs=1e-12)
    for target in (0.0, 0.001, 0.01, 0.1, 0.5):
        assert metrics.tpr_at_fpr(y, s, target) == pytest.approx(
            _naive_tpr_at_fpr(y, s, target), abs=1e-12
        )


def test_ap_without_ties_is_mean_precision_at_each_fake():
    # Second, rank-based definition: with distinct scores AP = mean over fakes of the
    # precision among everything scored at least as high as that fake.
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y  # continuous: no ties
    order = np.argsort(-s)
    ys = y[order]
    prec_at = np.cumsum(ys) / np.arange(1, ys.size + 1)
    assert metrics.average_precision(y, s) == pytest.approx(prec_at[ys == 1].mean(), abs=1e-12)
    # Hand example: ranks fake, real, fake -> (1/1 + 2/3) / 2.
    assert metrics.average_precision([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(5 / 6)


def test_tpr_at_fpr_hand_example():
    # 1000 reals, 10 fakes. Fakes at 0.99 (x6), 0.5 (x4); one real at 0.995, the rest < 0.4.
    y = np.r_[np.zeros(1000, int), np.ones(10, int)]
    s = np.r_[0.995, np.linspace(0.0, 0.39, 999), [0.99] * 6, [0.5] * 4]
    # FPR 0.1% allows exactly the one real: threshold 0.5 catches all 10 fakes and only it.
    assert metrics.tpr_at_fpr(y, s, 0.001) == pytest.approx(1.0)
    assert metrics.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.0)
    s2 = s.copy()
    s2[-4:] = 0.3  # now the 4 fakes sit among the reals: reaching them costs > 1% FPR
    assert metrics.tpr_at_fpr(y, s2, 0.01) == pytest.approx(0.6)
    with pytest.raises(ValueError, match="max_fpr"):
        metrics.tpr_at_fpr(y, s, 1.5)


def test_per_method_auc_matches_naive_subsets():
    rng = np.random.default_rng(6)
    methods = np.array(["real"] * 50 + ["A"] * 30 + ["B"] * 20)
    y = (methods != "real").astype(int)
    s = rng.random(100) + np.where(methods == "A", 0.5, 0.0) + np.where(methods == "B", 0.1, 0)
    got = metrics.per_method_auc(y, s, methods)
    assert list(got) == ["A", "B"]
    for m in ("A", "B"):
        keep = (methods == "real") | (methods == m)
        assert got[m] == pytest.approx(_naive_auc(y[keep], s[keep]), abs=1e-12)
    assert got["A"] > got["B"]
    # No real sample at all: NaN, not a crash.
    only = metrics.per_method_auc(y[y == 1], s[y == 1], methods[y == 1])
    assert np.isnan(only["A"]) and np.isnan(only["B"])


def test_eer_known_answers():
    # Perfect separation: EER 0.
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0
    # Perfectly inverted: EER 1.
    assert metrics.eer([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 1.0
    # One real above one fake out of 2+2: at threshold 0.6, FPR = FNR = 0.5 exactly.
    assert metrics.eer([0, 0, 1, 1], [0.1, 0.7, 0.6, 0.9]) == pytest.approx(0.5)
    # 4 reals / 4 fakes, one of each misranked: FPR = FNR = 0.25 at the crossing.
    y = [0, 0, 0, 0, 1, 1, 1, 1]
    s = [0.1, 0.2, 0.3, 0.75, 0.7, 0.8, 0.85, 0.9]
    assert metrics.eer(y, s) == pytest.approx(0.25)


def test_eer_against_naive_roc_crossing():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(size=2000) + 1.0 * y
    fpr, tpr, _ = _naive_roc(y, s)
    fnr = 1 - tpr
    k = np.argmax(fpr - fnr >= 0)
    # Within one ROC step of the naive curve's crossing.
    assert metrics.eer(y, s) == pytest.approx((fpr[k] + fnr[k]) / 2, abs=2e-3)
    # Theory for two unit Gaussians 1 apart: EER = Phi(-0.5) = 0.3085.
    assert metrics.eer(y, s) == pytest.approx(0.3085, abs=0.025)


def test_best_threshold_youden_and_accuracy():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.3])
    fpr, tpr, thr = _naive_roc(y, s)
    j = tpr - fpr
    expected = thr[np.argmax(j)]
    assert metrics.best_threshold(y, s) == pytest.approx(expected)
    t = metrics.best_threshold(y, s)
    assert metrics.accuracy(y, s, t) == pytest.approx(np.mean((s >= t) == y))
    assert metrics.accuracy(y, s, 0.45) == pytest.approx(5 / 6)


def test_aggregate_by_video_hand_example():
    vids = ["b", "a", "b", "c", "a", "b"]
    labels = [1, 0, 1, 1, 0, 1]
    scores = [0.9, 0.2, 0.6, 0.4, 0.4, 0.3]
    v, y, s = metrics.aggregate_by_video(vids, labels, scores)
    assert v.tolist() == ["b", "a", "c"]
    assert y.tolist() == [1, 0, 1]
    np.testing.assert_allclose(s, [0.6, 0.3, 0.4])
    with pytest.raises(ValueError, match="different labels"):
        metrics.aggregate_by_video(["a", "a"], [0, 1], [0.1, 0.2])


def test_summarize_and_errors():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 100)
    s = rng.random(100) + 0.5 * y
    out = metrics.summarize(y, s, threshold=0.5)
    assert out["auc"] == pytest.approx(_naive_auc(y, s))
    assert out["ap"] == pytest.approx(_naive_ap(y, s))
    assert out["tpr@fpr1%"] == pytest.approx(_naive_tpr_at_fpr(y, s, 0.01))
    assert out["tpr@fpr0.1%"] == pytest.approx(_naive_tpr_at_fpr(y, s, 0.001))
    assert out["acc"] == pytest.approx(np.mean((s >= 0.5) == y))
    assert out["n"] == 100 and out["n_pos"] == int(y.sum())
    with pytest.raises(ValueError, match="one class"):
        metrics.roc_auc([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.roc_auc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="differ in length"):
        metrics.aggregate_by_video(["a"], [0, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        metrics.eer([0, 1], [0.1, float("nan")])
