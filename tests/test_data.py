"""The paper's augmentations (Section III-G): rates, ranges, each op vs. a naive reference; and
the one preprocessing path (data/preprocess.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from aird_jax.data import augment, preprocess

N = 4000


def _img(seed=0, size=16):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def _draws(seed0=0):
    return [augment.draw(np.random.default_rng([seed0, 0, i])) for i in range(N)]


def _within(rate, p, n=N):
    # 5 binomial standard deviations: a false failure is a ~1e-6 event.
    return abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / n)


def test_draw_rates_and_ranges():
    ds = _draws()
    assert _within(np.mean([d.flip for d in ds]), 0.5)
    assert _within(np.mean([d.jpeg for d in ds]), 0.3)
    assert _within(np.mean([d.noise for d in ds]), 0.2)
    q = np.array([d.jpeg_quality for d in ds])
    assert q.min() == 70 and q.max() == 100  # inclusive ends are reached
    counts = np.bincount(q - 70, minlength=31)
    assert counts.min() > N / 31 / 2  # roughly uniform over 70..100
    for attr in ("brightness", "contrast"):
        v = np.array([getattr(d, attr) for d in ds])
        assert 0.8 <= v.min() < 0.82 and 1.18 < v.max() <= 1.2
        assert abs(v.mean() - 1.0) < 0.01
    # Draws are a pure function of the per-example seed.
    assert _draws(0)[:50] == _draws(0)[:50] and _draws(0)[:50] != _draws(1)[:50]


def test_apply_matches_naive_reference():
    rgb = _img()
    d = augment.Draws(
        flip=True,
        brightness=1.1,
        contrast=0.85,
        jpeg=False,
        jpeg_quality=80,
        noise=False,
        noise_seed=0,
    )
    out = augment.apply(rgb, d)
    # Naive per-pixel loop in float64.
    x = rgb.astype(np.float64) / 255.0
    ref = np.empty_like(x)
    h, w, _ = x.shape
    for i in range(h):
        for j in range(w):
            ref[i, j] = x[i, w - 1 - j] * 1.1
    mean = (ref @ np.array([0.299, 0.587, 0.114])).mean()
    ref = np.clip((ref - mean) * 0.85 + mean, 0, 1)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert out.dtype == np.float32


def test_jpeg_and_noise_effects():
    rgb = _img(1, 32)
    base = dict(flip=False, brightness=1.0, contrast=1.0, jpeg_quality=70, noise_seed=3)
    clean = augment.apply(rgb, augment.Draws(jpeg=False, noise=False, **base))
    np.testing.assert_allclose(clean, rgb / 255.0, atol=1e-6)
    jpg = augment.apply(rgb, augment.Draws(jpeg=True, noise=False, **base))
    # Reference JPEG via Pillow (independent encoder API; same libjpeg family, so close, and
    # both far from the clean image on random noise content).
    buf = __import__("io").BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=70)
    pil = np.asarray(Image.open(buf).convert("RGB")) / 255.0
    err_cv, err_pil = np.abs(jpg - clean).mean(), np.abs(pil - clean).mean()
    assert err_cv > 0.02 and abs(err_cv - err_pil) < 0.25 * err_pil
    noisy = augment.apply(rgb, augment.Draws(jpeg=False, noise=True, **base))
    diff = (noisy - clean)[(clean > 0.05) & (clean < 0.95)]  # away from the clip
    assert abs(diff.std() - 0.01) < 0.001 and abs(diff.mean()) < 0.001


def test_pipeline_flip_and_jpeg_rates_observed_in_outputs():
    """Rates measured on the augmented images themselves, not on the draws."""
    rgb = _img(2, 16)
    flipped = jpeg = 0
    n = 1500
    p = augment.AugmentParams()
    for i in range(n):
        d = augment.draw(np.random.default_rng([7, 0, i]))
        # Neutralise photometric jitter and noise so the geometry and JPEG are observable.
        d = dataclasses.replace(d, brightness=1.0, contrast=1.0, noise=False)
        out = augment.apply(rgb, d, p)
        ref = rgb / 255.0
        if np.abs(out - ref[:, ::-1]).max() < np.abs(out - ref).max():
            flipped += 1
        if min(np.abs(out - ref).max(), np.abs(out - ref[:, ::-1]).max()) > 1e-6:
            jpeg += 1
    assert _within(flipped / n, 0.5, n) and _within(jpeg / n, 0.3, n)


def test_resize_is_antialiased():
    # A 1-px checkerboard shrunk 2x must become flat grey (area averaging), not alias.
    board = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
    small = preprocess.resize(np.repeat(board[..., None], 3, -1), 32)
    assert np.abs(small.astype(int) - 127).max() <= 1


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        preprocess.load_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="Cannot decode"):
        preprocess.load_image(bad)
