"""Classic spectral deepfake baselines: fixed frequency features + a linear classifier.

Three registered models, each ``features -> standardise -> logistic regression``:

* ``dct_stats``: mean log|coefficient| of every 8x8 block-DCT frequency over the face
  (grayscale BT.601, orthonormal DCT-II per block, ``aird_jax.ops.dct``), with the low-frequency
  ``model.dct_cutoff x model.dct_cutoff`` corner removed (64 - k^2 features).
* ``frank_dct``: Frank et al., ICML 2020 ("Leveraging Frequency Analysis for Deep Fake Image
  Recognition"): the log-scaled full-image 2-D DCT-II (orthonormal) of the grayscale face,
  ``log(|c| + 1e-12)`` as in the authors' code, flattened (S*S features).
* ``durall_spectrum``: Durall et al., CVPR 2020 ("Watch your Up-Convolution"): the azimuthally
  averaged log magnitude spectrum ``20 log(|FFT2(gray)| + 1e-8)``, one bin per integer radius
  ``floor(sqrt(fy^2 + fx^2))`` of the integer FFT frequencies (DC = radius 0), then min-max
  normalised per image as in the authors' code. Two deliberate differences from their script:
  radii are measured from the DC sample itself (their centre ``(N-1)/2`` sits half a pixel
  off it) and the profile is not re-interpolated to 300 points (the image size is fixed).

Features are computed in ``jax.numpy`` inside ``__call__``, so the scoring path
(``aird_jax.inference.Scorer``) jits them like any network. The fitted standardisation
(``scaler/mean``, ``scaler/scale``) and the logistic regression (``classifier/kernel``,
``classifier/bias``) are ordinary parameters, so a run's Orbax checkpoint holds the whole fit;
``aird_jax.spectral_fit`` fills them with scikit-learn. Logits are ``[0, w.x + b]``: the
softmax's P(fake) is exactly ``sigmoid(w.x + b)``, scikit-learn's ``predict_proba[:, 1]``.

Output dict as every model's: ``logits`` [B, 2], ``embedding`` (the standardised features,
L2-normalised) and ``features`` (the raw spectral features, before standardisation).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from aird_jax.models.common import check_images
from aird_jax.models.heads import l2_normalize
from aird_jax.models.registry import check_choice, is_int, register_model
from aird_jax.ops.dct import block_dct, dct_matrix, rgb_to_gray

SPECTRAL_MODELS = ("dct_stats", "frank_dct", "durall_spectrum")
DCT_STATS_EPS = 1e-6  # log(|c| + eps): flat 8-bit blocks give exact zeros
FRANK_EPS = 1e-12  # Frank et al.'s log_scale epsilon
DURALL_EPS = 1e-8  # Durall et al.'s epsilon in 20 log(|F| + eps)
BLOCK = 8


# ------------------------------------------------------------------------------ features
def gray(x: jax.Array) -> jax.Array:
    """[B, H, W, 3] RGB in [0, 1] -> [B, H, W] BT.601 luma, float32."""
    return rgb_to_gray(x.astype(jnp.float32))[..., 0]


def dct_stats_features(x: jax.Array, cutoff: int) -> jax.Array:
    """Mean over blocks of log(|8x8 block DCT| + eps), the 64 - cutoff^2 frequencies outside the
    low ``cutoff x cutoff`` corner, in row-major (u, v) order. [B, H, W, 3] -> [B, F]."""
    g = gray(x)[..., None]
    c = block_dct(g, BLOCK)[..., 0]
    b, h, w = c.shape
    c = c.reshape(b, h // BLOCK, BLOCK, w // BLOCK, BLOCK)
    stats = jnp.mean(jnp.log(jnp.abs(c) + DCT_STATS_EPS), axis=(1, 3)).reshape(b, BLOCK * BLOCK)
    return stats[:, dct_stats_keep(cutoff)]


def dct_stats_keep(cutoff: int) -> np.ndarray:
    """Flat (u * 8 + v) indices of the frequencies kept by ``dct_stats``."""
    u, v = np.divmod(np.arange(BLOCK * BLOCK), BLOCK)
    return np.flatnonzero((u >= cutoff) | (v >= cutoff))


def frank_features(x: jax.Array) -> jax.Array:
    """log(|DCT-II(gray)| + 1e-12) of the whole image (orthonormal, as
    ``scipy.fft.dctn(norm="ortho")``), flattened row-major. [B, H, W, 3] -> [B, H*W]."""
    g = gray(x)
    dh = jnp.asarray(dct_matrix(g.shape[1]), jnp.float32)
    dw = jnp.asarray(dct_matrix(g.shape[2]), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    c = jnp.einsum("uh,bhw,vw->buv", dh, g, dw, precision=hi)
    return jnp.log(jnp.abs(c) + FRANK_EPS).reshape(g.shape[0], -1)


@functools.lru_cache(maxsize=8)
def radial_bins(h: int, w: int) -> tuple[np.ndarray, int]:
    """Per FFT sample (unshifted layout), its radius bin ``floor(sqrt(fy^2 + fx^2))`` of the
    integer frequencies; and the number of bins."""
    fy = np.fft.fftfreq(h) * h
    fx = np.fft.fftfreq(w) * w
    r = np.floor(np.hypot(fy[:, None], fx[None, :])).astype(np.int32)
    return r.reshape(-1), int(r.max()) + 1


def durall_features(x: jax.Array) -> jax.Array:
    """Azimuthal average of 20 log(|FFT2(gray)| + 1e-8), min-max normalised per image.
    [B, H, W, 3] -> [B, n_bins]."""
    g = gray(x)
    b, h, w = g.shape
    mag = 20.0 * jnp.log(jnp.abs(jnp.fft.fft2(g)) + DURALL_EPS)
    bins, n = radial_bins(h, w)
    counts = np.bincount(bins, minlength=n).astype(np.float32)
    sums = jnp.zeros((b, n), jnp.float32).at[:, bins].add(mag.reshape(b, -1))
    prof = sums / counts
    lo = jnp.min(prof, axis=1, keepdims=True)
    hi = jnp.max(prof, axis=1, keepdims=True)
    return (prof - lo) / jnp.maximum(hi - lo, 1e-12)


def spectral_features(name: str, x: jax.Array, cutoff: int = 0) -> jax.Array:
    """The features of model ``name`` (one of :data:`SPECTRAL_MODELS`)."""
    if name == "dct_stats":
        return dct_stats_features(x, cutoff)
    if name == "frank_dct":
        return frank_features(x)
    if name == "durall_spectrum":
        return durall_features(x)
    raise ValueError(f"unknown spectral model {name!r}; choose one of {list(SPECTRAL_MODELS)}")


# -------------------------------------------------------------------------------- module
class SpectralLinear(nn.Module):
    """Spectral features -> (x - mean) / scale -> logistic regression, all fitted offline.

    Parameters start as identity standardisation and a zero classifier (P(fake) = 0.5) until
    :mod:`aird_jax.spectral_fit` writes the scikit-learn fit into them.
    """

    kind: str
    dct_cutoff: int = 4

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        del train  # nothing is trained by gradient: the same function in both modes
        check_images(x, f"spectral model {self.kind!r}", BLOCK)
        feats = spectral_features(self.kind, x, self.dct_cutoff)
        f = feats.shape[-1]
        mean = self.param("mean", nn.initializers.zeros, (f,), jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (f,), jnp.float32)
        z = (feats - mean) / scale
        kernel = self.param("kernel", nn.initializers.zeros, (f,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (), jnp.float32)
        margin = jnp.dot(z, kernel, precision=jax.lax.Precision.HIGHEST) + bias
        logits = jnp.stack([jnp.zeros_like(margin), margin], axis=-1)
        return {"logits": logits, "embedding": l2_normalize(z), "features": feats}


def num_features(kind: str, image_size: int, cutoff: int) -> int:
    """How many features ``kind`` makes from ``image_size`` square images."""
    if kind == "dct_stats":
        return len(dct_stats_keep(cutoff))
    if kind == "frank_dct":
        return image_size * image_size
    return radial_bins(image_size, image_size)[1]


# ---------------------------------------------------------------------------- registry
def validate_spectral(model_cfg: Any) -> None:
    check_choice(model_cfg, "name", SPECTRAL_MODELS)
    k = model_cfg.dct_cutoff
    if model_cfg.name == "dct_stats" and (not is_int(k) or not 0 <= k < BLOCK):
        raise ValueError(
            f"model.dct_cutoff={k!r} must be an integer in [0, {BLOCK}) for dct_stats (the "
            "low-frequency k x k corner of every 8x8 block that is left out; 0 keeps all 64)"
        )


def build_spectral(model_cfg: Any, axis_name: str | None = None) -> SpectralLinear:
    """The spectral baseline ``model_cfg.name``; ``axis_name`` is unused (no BatchNorm)."""
    del axis_name
    return SpectralLinear(kind=str(model_cfg.name), dct_cutoff=int(model_cfg.dct_cutoff))


for _name in SPECTRAL_MODELS:
    register_model(_name, validate=validate_spectral)(build_spectral)
