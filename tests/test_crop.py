"""data.crop="native": windows of the face at its own resolution, checked against plain slicing."""

from __future__ import annotations

import numpy as np
import pytest

from aird_jax.data import preprocess


def _face(h: int = 40, w: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_native_centre_window_is_a_slice():
    rgb = _face()
    out = preprocess.fit(rgb, 16, "native")
    top, left = (40 - 16) // 2, (50 - 16) // 2
    np.testing.assert_array_equal(out, rgb[top : top + 16, left : left + 16])
    np.testing.assert_allclose(
        preprocess.prepare(rgb, 16, "native"),
        rgb[top : top + 16, left : left + 16] / 255.0,
        rtol=1e-6,
    )


def test_resize_mode_is_the_old_path():
    rgb = _face()
    np.testing.assert_array_equal(preprocess.fit(rgb, 24), preprocess.resize(rgb, 24))


def test_train_window_is_a_seeded_uniform_slice():
    rgb = _face()
    seen = set()
    for i in range(400):
        rng = np.random.default_rng([7, i])
        out = preprocess.train_window(rgb, 16, "native", rng)
        # Find where it came from by brute force (the reference: every possible slice).
        hits = [
            (t, left)
            for t in range(40 - 16 + 1)
            for left in range(50 - 16 + 1)
            if np.array_equal(rgb[t : t + 16, left : left + 16], out)
        ]
        assert len(hits) == 1
        seen.add(hits[0])
        again = preprocess.train_window(rgb, 16, "native", np.random.default_rng([7, i]))
        np.testing.assert_array_equal(out, again)
    tops = {t for t, _ in seen}
    lefts = {left for _, left in seen}
    assert min(tops) == 0 and max(tops) == 24 and min(lefts) == 0 and max(lefts) == 34


def test_small_faces_are_enlarged_first():
    rgb = _face(10, 20)
    out = preprocess.fit(rgb, 16, "native")
    assert out.shape == (16, 16, 3)
    import cv2

    big = cv2.resize(rgb, (32, 16), interpolation=cv2.INTER_CUBIC)
    np.testing.assert_array_equal(out, big[:, 8:24])


def test_unknown_crop_is_refused():
    with pytest.raises(ValueError, match="data.crop"):
        preprocess.fit(_face(), 16, "zoom")
