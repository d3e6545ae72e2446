"""The paper's training augmentations (Section III-G), as numpy ops.

Paper: horizontal flip (p=0.5), brightness/contrast jitter (+-20%), Gaussian noise
(sigma=0.01, p=0.2), JPEG compression (quality 70-100, p=0.3). The paper gives neither the
order nor the jitter's exact definition; ours (documented, fixed):

1. horizontal flip with p=0.5;
2. brightness: x *= b, b ~ U[0.8, 1.2]  (always applied, as a jitter);
3. contrast:   x = (x - m) * c + m, c ~ U[0.8, 1.2], m = mean BT.601 luma of the image
   (the torchvision ColorJitter definition); clip to [0, 1];
4. JPEG with p=0.3: round to uint8, OpenCV encode at quality q ~ U{70..100}, decode;
5. Gaussian noise with p=0.2: x += N(0, 0.01^2) in [0, 1] units; clip to [0, 1].

JPEG comes before the noise so the noise is not quantised away. Every draw comes from the
``np.random.Generator`` passed in, which the pipeline seeds per example from
(seed, epoch, position), so augmentations are reproducible whatever the worker count.
Output is float32 raw RGB in [0, 1]; the model applies ImageNet mean/std for its RGB stream
itself and feeds raw pixels to the frequency stream (contract), so one tensor suffices.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from aird_jax.data.preprocess import jpeg_reencode

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class AugmentParams:
    """The paper's settings (Section III-G)."""

    flip_p: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    noise_p: float = 0.2
    noise_sigma: float = 0.01
    jpeg_p: float = 0.3
    jpeg_quality: tuple[int, int] = (70, 100)  # inclusive


@dataclasses.dataclass(frozen=True)
class Draws:
    """All random choices for one example (drawn up front, in a fixed order)."""

    flip: bool
    brightness: float
    contrast: float
    jpeg: bool
    jpeg_quality: int
    noise: bool
    noise_seed: int


def draw(rng: np.random.Generator, p: AugmentParams = AugmentParams()) -> Draws:
    # Fixed draw order: the same rng state always gives the same augmentation.
    u = rng.random(5)
    q = int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1))
    return Draws(
        flip=bool(u[0] < p.flip_p),
        brightness=float(1.0 + p.brightness * (2.0 * u[1] - 1.0)),
        contrast=float(1.0 + p.contrast * (2.0 * u[2] - 1.0)),
        jpeg=bool(u[3] < p.jpeg_p),
        jpeg_quality=q,
        noise=bool(u[4] < p.noise_p),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def apply(rgb: np.ndarray, d: Draws, p: AugmentParams = AugmentParams()) -> np.ndarray:
    """uint8 RGB -> augmented float32 RGB in [0, 1]."""
    rgb = np.ascontiguousarray(rgb)
    u8 = cv2.flip(rgb, 1) if d.flip else rgb  # cv2: ~50x faster than a strided numpy copy
    # Brightness then contrast, fused into one affine map (same result, fewer passes over
    # the image): ((x b - m) c + m) with m = mean luma of x b = b * mean luma of x.
    b, c = np.float32(d.brightness), np.float32(d.contrast)
    m = b * np.float32(np.asarray(cv2.mean(u8)[:3], np.float32) @ _LUMA) / np.float32(255.0)
    x = u8.astype(np.float32)
    x *= b * c / np.float32(255.0)
    x += m * (np.float32(1.0) - c)
    np.clip(x, 0.0, 1.0, out=x)
    if d.jpeg:
        u8 = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        x = jpeg_reencode(u8, d.jpeg_quality).astype(np.float32) * np.float32(1.0 / 255.0)
    if d.noise:
        noise = np.random.default_rng(d.noise_seed).standard_normal(x.shape, dtype=np.float32)
        x = np.clip(x + np.float32(p.noise_sigma) * noise, 0.0, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32)
