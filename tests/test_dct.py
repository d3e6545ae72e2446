"""Block DCT against scipy's orthonormal DCT-II, on random data and on real FF++ face crops."""

from __future__ import annotations

from pathlib import Path

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft

from aird_jax.ops.dct import (
    block_dct,
    block_idct,
    dct_highpass,
    highpass_mask,
    rgb_to_gray,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FACES = SHARED / "ffpp_faces299"


def scipy_block_dct(x: np.ndarray, block: int = 8) -> np.ndarray:
    """Reference: scipy.fft.dctn(norm="ortho") on each block, by explicit loops, in float64."""
    out = np.zeros(x.shape, np.float64)
    b, h, w, _ = x.shape
    for n in range(b):
        for i in range(0, h, block):
            for j in range(0, w, block):
                tile = x[n, i : i + block, j : j + block, 0].astype(np.float64)
                out[n, i : i + block, j : j + block, 0] = scipy.fft.dctn(tile, norm="ortho")
    return out


def test_block_dct_matches_scipy_random():
    x = np.random.default_rng(0).normal(size=(3, 32, 40, 1)).astype(np.float32)
    got = np.asarray(block_dct(jnp.asarray(x)))
    np.testing.assert_allclose(got, scipy_block_dct(x), atol=2e-5, rtol=1e-5)


def test_block_dct_other_block_size():
    x = np.random.default_rng(1).random((1, 16, 16, 1)).astype(np.float32)
    got = np.asarray(block_dct(jnp.asarray(x), block=4))
    np.testing.assert_allclose(got, scipy_block_dct(x, block=4), atol=1e-5)


def _real_faces(n: int = 4, size: int = 224) -> np.ndarray:
    if not FACES.is_dir():
        pytest.skip(f"real face crops not found at {FACES} (../shared/data is absent)")
    files = (
        sorted((FACES / "real").rglob("*.jpg"))[:2] + sorted((FACES / "fake").rglob("*.jpg"))[:2]
    )
    if not files:
        pytest.skip(f"no .jpg files under {FACES}")
    imgs = []
    for f in files[:n]:
        bgr = cv2.imread(str(f), cv2.IMREAD_COLOR)
        assert bgr is not None, f
        rgb = cv2.cvtColor(
            cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
        )
        imgs.append(rgb.astype(np.float32) / 255.0)
    return np.stack(imgs)


def test_real_faces_against_scipy_and_cv2_gray():
    rgb = _real_faces()
    gray = np.asarray(rgb_to_gray(jnp.asarray(rgb)))
    # BT.601 is also OpenCV's RGB2GRAY formula: an independent check of the weights.
    cv_gray = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in rgb])[..., None]
    np.testing.assert_allclose(gray, cv_gray, atol=1e-5)
    got = np.asarray(block_dct(jnp.asarray(gray)))
    ref = scipy_block_dct(gray)
    np.testing.assert_allclose(got, ref, atol=5e-5)
    # Real images: most energy sits in the DC terms, and the high-pass keeps only the rest.
    hp = np.asarray(dct_highpass(jnp.asarray(gray), cutoff=4))
    mask = np.tile(highpass_mask(4), (28, 28))[None, :, :, None]
    np.testing.assert_allclose(hp, ref * mask, atol=5e-5)


def test_roundtrip_and_parseval():
    x = np.random.default_rng(2).random((2, 24, 16, 1)).astype(np.float32)
    c = block_dct(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(block_idct(c)), x, atol=1e-5)
    np.testing.assert_allclose(
        float(jnp.sum(c**2)), float(np.sum(x.astype(np.float64) ** 2)), rtol=1e-5
    )


@pytest.mark.parametrize("cutoff", range(0, 9))
def test_mask_zeroes_exactly_top_left(cutoff):
    m = highpass_mask(cutoff)
    u, v = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    np.testing.assert_array_equal(m == 0, (u < cutoff) & (v < cutoff))
    x = np.random.default_rng(cutoff).normal(size=(1, 16, 24, 1)).astype(np.float32) + 3.0
    hp = np.asarray(dct_highpass(jnp.asarray(x), cutoff=cutoff))
    full = scipy_block_dct(x)
    for i in range(0, 16, 8):
        for j in range(0, 24, 8):
            blk, ref = hp[0, i : i + 8, j : j + 8, 0], full[0, i : i + 8, j : j + 8, 0]
            assert np.all(blk[(u < cutoff) & (v < cutoff)] == 0.0)
            np.testing.assert_allclose(
                blk[~((u < cutoff) & (v < cutoff))], ref[~((u < cutoff) & (v < cutoff))], atol=2e-5
            )


def test_jit_matches_eager():
    x = jnp.asarray(np.random.default_rng(3).random((2, 16, 16, 3)).astype(np.float32))
    f = lambda im: dct_highpass(rgb_to_gray(im), cutoff=3)
    np.testing.assert_allclose(np.asarray(jax.jit(f)(x)), np.asarray(f(x)), atol=1e-6)


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiples"):
        block_dct(jnp.zeros((1, 20, 16, 1)))
    with pytest.raises(ValueError, match=r"\[B, H, W, 1\]"):
        block_dct(jnp.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="3 channels"):
        rgb_to_gray(jnp.zeros((1, 8, 8, 1)))


def test_mask_formula_is_total():
    """Eq. 3 needs no range check: beyond 0..8 it saturates (configs are held to integers in 0..8
    once, by validate_model_config; see test_models.test_bad_config_raises_value_error)."""
    np.testing.assert_array_equal(highpass_mask(-1), highpass_mask(0))
    assert np.all(highpass_mask(0) == 1.0)
    np.testing.assert_array_equal(highpass_mask(9), highpass_mask(8))
    assert np.all(highpass_mask(8) == 0.0)
