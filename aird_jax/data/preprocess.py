"""The one preprocessing path from encoded bytes or a file to the model's input.

Training, validation, evaluation and ``predict`` all go through :func:`prepare`: decode (OpenCV,
RGB uint8) -> :func:`fit` to the run's ``image_size`` (``data.crop``: square resize, or the
centre window of the native-resolution face) -> float32 raw RGB in [0, 1]. Training with
augmentation takes a random window instead of the centre one (:func:`train_window`). The model
normalises with the ImageNet statistics for its RGB stream itself and feeds the raw pixels to
its frequency stream, so one tensor suffices. A score the user gets from ``predict`` is therefore
computed on exactly the input the run was validated on.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


class ImageDecodeError(ValueError):
    """An encoded image could not be decoded."""


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes (PNG/JPEG/...) -> uint8 RGB [H, W, 3]."""
    buf = np.frombuffer(data, np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ImageDecodeError(f"Could not decode an image of {len(data)} bytes (corrupt file?).")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB uint8 [H, W, 3] (clear error when missing or unreadable)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"Image not found: {p}")
    data = np.fromfile(str(p), dtype=np.uint8)
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ValueError(
            f"Cannot decode image {p} ({data.size} bytes): not an image OpenCV can read, or "
            "the file is truncated/corrupt."
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    """Square resize: INTER_AREA when shrinking (anti-aliased), bicubic when enlarging.

    Anti-aliasing matters here: a plain bilinear shrink would alias and add exactly the kind of
    high-frequency content the frequency stream looks at.
    """
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interp)


# data.crop: "resize" = the whole face resized to image_size (the paper's protocol);
# "native" = no resampling: an image_size window of the face at its own resolution (random in
# training, the centre one otherwise). Resizing a 299-px crop down to a CPU-sized input would
# low-pass away the very high-frequency artefacts the frequency stream is built to see.
CROPS = ("resize", "native")


def data_crop(data_cfg) -> str:
    """A run's ``data.crop`` (runs trained before it existed resized: "resize")."""
    return str(data_cfg.get("crop", "resize"))


def _window(rgb: np.ndarray, size: int, top: int, left: int) -> np.ndarray:
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def at_least(rgb: np.ndarray, size: int) -> np.ndarray:
    """Enlarge (bicubic, aspect kept) a face smaller than ``size`` on a side; others unchanged."""
    h, w = rgb.shape[:2]
    if min(h, w) >= size:
        return rgb
    f = size / min(h, w)
    shape = (max(size, round(w * f)), max(size, round(h * f)))
    return cv2.resize(rgb, shape, interpolation=cv2.INTER_CUBIC)


def fit(rgb: np.ndarray, size: int, crop: str = "resize") -> np.ndarray:
    """uint8 RGB of any size -> uint8 [size, size, 3]: resized, or its centre window."""
    if crop == "resize":
        return resize(rgb, size)
    if crop != "native":
        raise ValueError(f"data.crop={crop!r} must be one of {CROPS}")
    rgb = at_least(rgb, size)
    h, w = rgb.shape[:2]
    return _window(rgb, size, (h - size) // 2, (w - size) // 2)


def train_window(rgb: np.ndarray, size: int, crop: str, rng: np.random.Generator) -> np.ndarray:
    """Like :func:`fit`, but a ``native`` window is placed uniformly at random (from ``rng``)."""
    if crop != "native":
        return fit(rgb, size, crop)
    rgb = at_least(rgb, size)
    h, w = rgb.shape[:2]
    top, left = (int(v) for v in rng.integers(0, [h - size + 1, w - size + 1]))
    return _window(rgb, size, top, left)


def to_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB -> float32 in [0, 1]."""
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)


def prepare(rgb: np.ndarray, size: int, crop: str = "resize") -> np.ndarray:
    """uint8 RGB of any size -> the model's float32 [size, size, 3] input in [0, 1]."""
    return to_float(fit(np.asarray(rgb, np.uint8), size, crop))


def jpeg_reencode(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode uint8 RGB to JPEG at ``quality`` and decode back (OpenCV's libjpeg, 4:2:0)."""
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - libjpeg failure on a valid uint8 image is not expected
        raise RuntimeError(f"OpenCV failed to JPEG-encode an image of shape {rgb.shape}.")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
