"""Degradations (Table V) against independent references: scipy.ndimage and Pillow's libjpeg."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy import ndimage

from aird_jax.data.degrade import BLUR_JPEG, DEGRADATIONS, degrade


def _natural_image() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:292, 150:374])  # 192x224 RGB uint8


def _random_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(67, 91, 3), dtype=np.uint8)  # odd sizes: border logic


def _scipy_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    out = ndimage.gaussian_filter(img.astype(np.float64), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _pil_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    image = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    # 4:2:0 chroma subsampling, the libjpeg default OpenCV also uses.
    image.fromarray(img).save(buf, format="JPEG", quality=quality, subsampling=2)
    buf.seek(0)
    return np.asarray(image.open(buf).convert("RGB"))


def test_names_are_the_contract():
    assert list(DEGRADATIONS) == [
        "none",
        "blur2",
        "blur3",
        "jpeg70",
        "jpeg50",
        "jpeg20",
        "blur_jpeg",
    ]


@pytest.mark.parametrize("name,sigma", [("blur2", 2.0), ("blur3", 3.0)])
@pytest.mark.parametrize("maker", [_natural_image, _random_image])
def test_blur_matches_scipy(name, sigma, maker):
    img = maker()
    got = degrade(img, name)
    ref = _scipy_blur(img, sigma)
    assert got.shape == img.shape and got.dtype == np.uint8
    # Float32 vs float64 filtering may flip a rounding: at most 1 level, rarely.
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01


@pytest.mark.parametrize("quality", [70, 50, 20])
@pytest.mark.parametrize("maker", [_natural_image, _random_image])
def test_jpeg_matches_pillow(quality, maker):
    img = maker()
    got = degrade(img, f"jpeg{quality}")
    ref = _pil_jpeg(img, quality)
    diff = np.abs(got.astype(int) - ref.astype(int))
    # Both use libjpeg's standard tables; allow IDCT/upsampling implementation differences.
    assert diff.mean() < 0.5, diff.mean()
    assert diff.max() <= 8
    # And it is not the identity.
    assert np.abs(got.astype(int) - img.astype(int)).mean() > 0.5


def test_blur_jpeg_is_blur_then_jpeg():
    img = _natural_image()
    got = degrade(img, "blur_jpeg")
    ref = _pil_jpeg(_scipy_blur(img, BLUR_JPEG["sigma"]), BLUR_JPEG["quality"])
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.mean() < 0.5 and diff.max() <= 8


def test_severity_ordering_on_a_natural_image():
    img = _natural_image().astype(int)

    def err(name):
        return np.abs(degrade(img.astype(np.uint8), name).astype(int) - img).mean()

    assert err("none") == 0
    assert err("blur2") < err("blur3")
    assert err("jpeg70") < err("jpeg50") < err("jpeg20")
    assert err("blur_jpeg") > err("blur2")


def test_deterministic_and_pure():
    img = _natural_image()
    before = img.copy()
    for name in DEGRADATIONS:
        a = degrade(img, name)
        b = degrade(img, name)
        np.testing.assert_array_equal(a, b)
        assert a is not img
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(degrade(img, None), img)


def test_bad_input_gives_clear_errors():
    img = _random_image()
    with pytest.raises(ValueError, match="blur2.*jpeg70.*blur_jpeg"):
        degrade(img, "gaussian")
    with pytest.raises(TypeError, match="uint8"):
        degrade(img.astype(np.float32) / 255, "blur2")
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        degrade(img[..., 0], "jpeg50")
