"""The paper's augmentations (:mod:`aird_jax.data.augment`) applied to a whole batch at once.

Bitwise equal to ``augment.apply`` on every example (tested), with the same per-example draws
(``augment.draw`` from each example's own seeded stream), so batch contents do not depend on the
worker count or on which path ran. What makes it cheaper than the per-example path:

- the per-example brightness/contrast affine map and its clip to [0, 1] act on uint8 pixels, so
  they are a 256-entry table per image: the tables of the whole batch are computed in one numpy
  pass with the reference's float32 operations in the reference's order (so each entry is the
  value the reference computes for that pixel value), and applied with ``cv2.LUT`` (uint8 ->
  float32) straight into the output batch, which replaces the reference's four full-image
  passes (convert, scale, shift, clip) by one;
- the flip is folded into the same pass (``cv2.flip`` of the uint8 window, a quarter of the
  bytes of a float32 flip).

JPEG (p=0.3) and the noise (p=0.2) stay per image: libjpeg works on one image, and each noise
field comes from its own seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from aird_jax.data.augment import _LUMA, AugmentParams, Draws
from aird_jax.data.preprocess import jpeg_reencode

_LEVELS = np.arange(256, dtype=np.float32)


def _mean_luma(u8: np.ndarray) -> np.float32:
    # Exactly the reference's expression; a flip does not change it (integer channel sums).
    return np.float32(np.asarray(cv2.mean(u8)[:3], np.float32) @ _LUMA)


def tables(images: Sequence[np.ndarray], draws: Sequence[Draws]) -> np.ndarray:
    """[B, 256] float32: what brightness, contrast and the clip make of each uint8 value."""
    b = np.asarray([d.brightness for d in draws], np.float32)
    c = np.asarray([d.contrast for d in draws], np.float32)
    luma = np.asarray([_mean_luma(u8) for u8 in images], np.float32)
    # The reference's float32 operations, in its order, one image per row.
    m = b * luma / np.float32(255.0)
    t = _LEVELS[None, :] * (b * c / np.float32(255.0))[:, None]
    t += (m * (np.float32(1.0) - c))[:, None]
    return np.clip(t, 0.0, 1.0, out=t)


def apply_batch(
    images: Sequence[np.ndarray], draws: Sequence[Draws], p: AugmentParams | None = None
) -> np.ndarray:
    """uint8 RGB windows (all [S, S, 3]) -> augmented float32 batch [B, S, S, 3] in [0, 1]."""
    p = p or AugmentParams()
    if len(images) != len(draws):
        raise ValueError(f"{len(images)} images but {len(draws)} draws.")
    out = np.empty((len(images), *np.shape(images[0])), np.float32)
    for i, (u8, d, lut) in enumerate(zip(images, draws, tables(images, draws))):
        u8 = np.ascontiguousarray(u8)
        cv2.LUT(cv2.flip(u8, 1) if d.flip else u8, lut, dst=out[i])
        if d.jpeg:
            q8 = np.clip(np.rint(out[i] * 255.0), 0, 255).astype(np.uint8)
            out[i] = jpeg_reencode(q8, d.jpeg_quality).astype(np.float32) * np.float32(1 / 255)
        if d.noise:
            gen = np.random.default_rng(d.noise_seed)
            noise = gen.standard_normal(out[i].shape, dtype=np.float32)
            np.clip(out[i] + np.float32(p.noise_sigma) * noise, 0.0, 1.0, out=out[i])
    return out
