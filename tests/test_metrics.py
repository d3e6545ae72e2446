"""Metrics against scikit-learn and hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from aird_jax import metrics


@pytest.mark.parametrize("seed,n,decimals", [(0, 300, 6), (1, 1000, 2), (2, 57, 1)])
def test_auc_and_roc_match_sklearn(seed, n, decimals):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = np.round(rng.random(n) + 0.4 * y, decimals)  # rounding makes ties
    assert metrics.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = metrics.roc_curve(y, s)
    f2, t2, th2 = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])


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


def test_eer_against_interpolated_sklearn_roc():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    s = rng.normal(size=2000) + 1.0 * y
    fpr, tpr, _ = sk_roc_curve(y, s)
    fnr = 1 - tpr
    k = np.argmax(fpr - fnr >= 0)
    # Within one ROC step of sklearn's curve crossing.
    assert metrics.eer(y, s) == pytest.approx((fpr[k] + fnr[k]) / 2, abs=2e-3)
    # Theory for two unit Gaussians 1 apart: EER = Phi(-0.5) = 0.3085.
    assert metrics.eer(y, s) == pytest.approx(0.3085, abs=0.025)


def test_best_threshold_youden_and_accuracy():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.3])
    fpr, tpr, thr = sk_roc_curve(y, s, drop_intermediate=False)
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
    assert out["auc"] == pytest.approx(roc_auc_score(y, s))
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
