"""augment_batch.apply_batch against the per-example reference, augment.apply: bitwise."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import skimage.data

from aird_jax.data import augment, augment_batch


def _faces(n: int, size: int) -> list[np.ndarray]:
    """Photograph windows (JPEG behaves as on faces) plus flat and saturated extremes."""
    photo = skimage.data.astronaut()
    rng = np.random.default_rng(0)
    out = [photo[y : y + size, x : x + size] for y, x in rng.integers(0, 512 - size, (n - 2, 2))]
    return out + [np.full((size, size, 3), 252, np.uint8), np.full((size, size, 3), 2, np.uint8)]


def test_seeded_draws_give_the_reference_bitwise():
    imgs = _faces(48, 40)
    draws = [augment.draw(np.random.default_rng([3, 1, i])) for i in range(len(imgs))]
    assert any(d.jpeg for d in draws) and any(d.noise for d in draws) and any(d.flip for d in draws)
    ref = np.stack([augment.apply(u8, d) for u8, d in zip(imgs, draws)])
    out = augment_batch.apply_batch(imgs, draws)
    assert out.dtype == np.float32 and out.shape == ref.shape
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("flip,jpeg,noise", list(itertools.product([False, True], repeat=3)))
def test_every_combination_and_extreme_jitter(flip, jpeg, noise):
    imgs = _faces(6, 24)
    draws = [
        augment.Draws(flip, b, c, jpeg, q, noise, 11 + i)
        for i, (b, c, q) in enumerate([(0.8, 0.8, 70), (1.2, 1.2, 100), (1.2, 0.8, 85)] * 2)
    ]
    ref = np.stack([augment.apply(u8, d) for u8, d in zip(imgs, draws)])
    np.testing.assert_array_equal(augment_batch.apply_batch(imgs, draws), ref)


def test_views_and_strided_windows_are_read_correctly():
    # The pipeline hands in slices of larger (memory-mapped) faces, not contiguous arrays.
    big = skimage.data.coffee()
    imgs = [big[10:42, 20:52], big[100:132, 7:39]]
    draws = [augment.Draws(True, 1.1, 0.9, False, 90, False, 0)] * 2
    ref = np.stack([augment.apply(np.ascontiguousarray(u8), d) for u8, d in zip(imgs, draws)])
    np.testing.assert_array_equal(augment_batch.apply_batch(imgs, draws), ref)


def test_count_mismatch_is_refused():
    with pytest.raises(ValueError, match="2 images but 1 draws"):
        augment_batch.apply_batch(_faces(2, 8), [augment.draw(np.random.default_rng(0))])
