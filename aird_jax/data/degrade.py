"""Test-time degradations for the robustness study (paper Table V).

The paper lists Gaussian blur (sigma 2 and 3), JPEG at quality 70 and 50, and "Blur + JPEG"
without defining the last one; Section V also mentions JPEG quality 20. We define:

=============  =============================================================
name           operation
=============  =============================================================
``none``       identity (a copy)
``blur2``      Gaussian blur, sigma = 2 px
``blur3``      Gaussian blur, sigma = 3 px
``jpeg70``     JPEG re-encoding at quality 70 (OpenCV / libjpeg, 4:2:0)
``jpeg50``     JPEG re-encoding at quality 50
``jpeg20``     JPEG re-encoding at quality 20
``blur_jpeg``  Gaussian blur sigma = 2, then JPEG quality 50 (OUR choice: the
               paper does not say which strengths it combined; we pair the
               milder blur with the middle JPEG quality of its table)
=============  =============================================================

Blur: separable Gaussian on each colour channel, kernel truncated at 4 sigma and mirrored
("reflect", edge pixel repeated) at the border -- the same definition as
``scipy.ndimage.gaussian_filter(img, (s, s, 0))``, so results agree with it to rounding.
Every operation is a pure function of the pixels: deterministic, no random draws.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from aird_jax.data import preprocess

__all__ = ["DEGRADATIONS", "degrade", "gaussian_blur", "jpeg_reencode", "BLUR_JPEG"]

# The composite's parameters, exported so reports can print them next to the results.
BLUR_JPEG = {"sigma": 2.0, "quality": 50}


def _check_image(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise TypeError(
            f"degrade() expects a uint8 RGB image, got dtype {rgb.dtype}; convert with "
            "np.clip(np.round(x * 255), 0, 255).astype(np.uint8) for images in [0, 1]."
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"degrade() expects an [H, W, 3] RGB image, got shape {rgb.shape}.")
    return rgb


def gaussian_blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with scipy.ndimage's kernel definition (truncate=4, mode='reflect')."""
    rgb = _check_image(rgb)
    if sigma <= 0:
        return rgb.copy()
    # Kernel radius = int(4 * sigma + 0.5), as in scipy.ndimage.gaussian_filter (truncate=4).
    radius = int(4.0 * sigma + 0.5)
    ksize = 2 * radius + 1
    # Filter in float32 so the only difference from a float64 reference is the final rounding.
    out = cv2.GaussianBlur(
        rgb.astype(np.float32),
        (ksize, ksize),
        sigmaX=sigma,
        sigmaY=sigma,
        borderType=cv2.BORDER_REFLECT,
    )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def jpeg_reencode(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode to JPEG at ``quality`` and decode back (OpenCV's libjpeg, 4:2:0 chroma)."""
    rgb = _check_image(rgb)
    if not 0 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in [0, 100], got {quality}.")
    return preprocess.jpeg_reencode(rgb, quality)


DEGRADATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda x: _check_image(x).copy(),
    "blur2": lambda x: gaussian_blur(x, 2.0),
    "blur3": lambda x: gaussian_blur(x, 3.0),
    "jpeg70": lambda x: jpeg_reencode(x, 70),
    "jpeg50": lambda x: jpeg_reencode(x, 50),
    "jpeg20": lambda x: jpeg_reencode(x, 20),
    "blur_jpeg": lambda x: jpeg_reencode(
        gaussian_blur(x, BLUR_JPEG["sigma"]), BLUR_JPEG["quality"]
    ),
}


def degrade(rgb_uint8: np.ndarray, name: str | None) -> np.ndarray:
    """Apply the named degradation to one uint8 RGB image [H, W, 3]; returns a new array.

    ``None`` is accepted as an alias of ``"none"`` so callers can pass an optional setting
    straight through.
    """
    key = "none" if name is None else str(name)
    fn = DEGRADATIONS.get(key)
    if fn is None:
        raise ValueError(
            f"Unknown degradation {name!r}; valid names are: {', '.join(DEGRADATIONS)}."
        )
    return fn(rgb_uint8)
