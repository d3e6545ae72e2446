"""SupCon and CE against naive per-anchor Python loops (float64 numpy)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aird_jax.losses import classification_loss, supcon_loss, total_loss


def naive_supcon(z: np.ndarray, labels: np.ndarray, t: float) -> float:
    """Khosla et al. L_out, written directly from the formula, one anchor at a time."""
    n = len(labels)
    per_anchor = []
    for i in range(n):
        pos = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        li = -sum(math.log(math.exp(float(z[i] @ z[p]) / t) / denom) for p in pos) / len(pos)
        per_anchor.append(li)
    return float(np.mean(per_anchor)) if per_anchor else 0.0


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("seed,n,d,t", [(0, 8, 4, 0.07), (1, 16, 128, 0.07), (2, 10, 3, 0.5)])
def test_supcon_matches_naive_loop(seed, n, d, t):
    rng = np.random.default_rng(seed)
    z = unit(rng.normal(size=(n, d)))
    y = rng.integers(0, 2, n)
    got = float(supcon_loss(jnp.asarray(z, jnp.float32), jnp.asarray(y), t))
    assert got == pytest.approx(naive_supcon(z, y, t), rel=2e-5, abs=1e-5)


def test_supcon_singleton_anchor_is_excluded_from_mean():
    rng = np.random.default_rng(3)
    z = unit(rng.normal(size=(5, 6)))
    y = np.array([0, 0, 0, 0, 1])  # the only fake has no positive
    got = float(supcon_loss(jnp.asarray(z, jnp.float32), jnp.asarray(y)))
    assert got == pytest.approx(naive_supcon(z, y, 0.07), rel=2e-5)


def test_supcon_no_positive_is_zero():
    z = unit(np.eye(3))
    assert float(supcon_loss(jnp.asarray(z, jnp.float32), jnp.asarray([0, 1, 2]))) == 0.0


def test_supcon_mask_equals_dropping_samples():
    rng = np.random.default_rng(4)
    z = unit(rng.normal(size=(12, 8))).astype(np.float32)
    y = rng.integers(0, 2, 12)
    mask = np.arange(12) < 9
    got = float(supcon_loss(jnp.asarray(z), jnp.asarray(y), mask=jnp.asarray(mask)))
    assert got == pytest.approx(naive_supcon(z[:9], y[:9], 0.07), rel=2e-5)


def test_supcon_permutation_invariant():
    rng = np.random.default_rng(5)
    z = unit(rng.normal(size=(16, 32))).astype(np.float32)
    y = rng.integers(0, 2, 16)
    perm = rng.permutation(16)
    a = float(supcon_loss(jnp.asarray(z), jnp.asarray(y)))
    b = float(supcon_loss(jnp.asarray(z[perm]), jnp.asarray(y[perm])))
    assert a == pytest.approx(b, rel=1e-6)


def test_supcon_gradient_finite_at_low_temperature():
    rng = np.random.default_rng(6)
    z = unit(rng.normal(size=(32, 128))).astype(np.float32)
    y = rng.integers(0, 2, 32)

    def f(e):
        return supcon_loss(e / jnp.linalg.norm(e, axis=1, keepdims=True), jnp.asarray(y), 0.07)

    g = jax.grad(f)(jnp.asarray(z))
    assert np.all(np.isfinite(np.asarray(g)))
    # Fully masked batch: finite zero loss and finite gradient too.
    g0 = jax.grad(lambda e: supcon_loss(e, jnp.asarray(y), mask=jnp.zeros(32, bool)))(
        jnp.asarray(z)
    )
    assert np.all(np.isfinite(np.asarray(g0)))


def test_clustered_batch_has_lower_loss_than_random():
    rng = np.random.default_rng(7)
    y = np.array([0] * 8 + [1] * 8)
    a, b = unit(rng.normal(size=(2, 16)))
    clustered = np.where(y[:, None] == 0, a, b).astype(np.float32)
    random = unit(rng.normal(size=(16, 16))).astype(np.float32)
    lc = float(supcon_loss(jnp.asarray(clustered), jnp.asarray(y)))
    lr = float(supcon_loss(jnp.asarray(random), jnp.asarray(y)))
    assert lc < lr
    assert lc == pytest.approx(naive_supcon(clustered, y, 0.07), rel=1e-4)


def test_classification_and_total_loss():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(6, 2)).astype(np.float32)
    y = rng.integers(0, 2, 6)
    ref = np.mean(
        [-(row[c] - np.log(np.exp(row).sum())) for row, c in zip(logits.astype(np.float64), y)]
    )
    assert float(classification_loss(jnp.asarray(logits), jnp.asarray(y))) == pytest.approx(
        ref, rel=1e-5
    )
    z = unit(rng.normal(size=(6, 4))).astype(np.float32)
    tot, parts = total_loss(jnp.asarray(logits), jnp.asarray(z), jnp.asarray(y), lam=0.5)
    assert float(tot) == pytest.approx(ref + 0.5 * naive_supcon(z, y, 0.07), rel=1e-4)
    assert set(parts) == {"ce", "supcon"}
