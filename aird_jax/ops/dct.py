"""Block DCT operators for the frequency stream (paper Section III-B, eqs. 1-3).

Everything here is pure jax.numpy and jittable. Images are NHWC floats.

The 2-D DCT of every non-overlapping ``block x block`` tile is computed as two small matrix
products, ``D @ X @ D.T``, with a precomputed orthonormal DCT-II matrix ``D``. Written as a
reshape to ``[B, H/8, 8, W/8, 8]`` followed by one einsum, XLA fuses it into a couple of
batched matmuls: no FFT and no Python loops, and it runs identically on CPU, GPU and TPU.
With ``norm="ortho"`` the transform equals the paper's eq. 2 (``1/4 C(u) C(v)`` for 8x8 blocks)
and ``scipy.fft.dctn(block, norm="ortho")``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# ITU-R BT.601 luma weights (paper eq. 1).
BT601 = (0.299, 0.587, 0.114)


@functools.lru_cache(maxsize=8)
def dct_matrix(n: int = 8) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` of size n x n (float64): ``D[u, x]``.

    ``D @ f`` is the 1-D DCT-II of ``f`` with ``norm="ortho"``; ``D.T`` is its inverse.
    """
    x = np.arange(n)
    u = x[:, None]
    d = np.cos(np.pi * (2 * x[None, :] + 1) * u / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


def rgb_to_gray(x: jax.Array) -> jax.Array:
    """BT.601 grayscale: ``[B, H, W, 3] -> [B, H, W, 1]`` (0.299 R + 0.587 G + 0.114 B)."""
    if x.shape[-1] != 3:
        raise ValueError(f"rgb_to_gray expects 3 channels in the last axis, got shape {x.shape}")
    w = jnp.asarray(BT601, dtype=x.dtype)
    return jnp.sum(x * w, axis=-1, keepdims=True)


def _check_blocks(x: jax.Array, block: int) -> tuple[int, int, int]:
    if x.ndim != 4 or x.shape[-1] != 1:
        raise ValueError(f"expected a single-channel NHWC array [B, H, W, 1], got shape {x.shape}")
    b, h, w, _ = x.shape
    if h % block or w % block:
        raise ValueError(
            f"image shape {x.shape}: height {h} and width {w} must be multiples of the "
            f"{block}x{block} DCT block; resize or crop first (e.g. 224 = 28 x 8)."
        )
    return b, h, w


def _blockwise(x: jax.Array, left: np.ndarray, right: np.ndarray, block: int) -> jax.Array:
    b, h, w = _check_blocks(x, block)
    # [B, H, W, 1] -> [B, H/8, 8(x), W/8, 8(y)]: row index 8i+x, column index 8j+y.
    tiles = x.reshape(b, h // block, block, w // block, block)
    lm = jnp.asarray(left, dtype=x.dtype)
    rm = jnp.asarray(right, dtype=x.dtype)
    # out[u, v] = sum_{x, y} L[u, x] tile[x, y] R[y, v]
    out = jnp.einsum("ux,bixjy,yv->biujv", lm, tiles, rm, precision=jax.lax.Precision.HIGHEST)
    return out.reshape(b, h, w, 1)


def block_dct(x: jax.Array, block: int = 8) -> jax.Array:
    """Orthonormal 2-D DCT-II of each non-overlapping ``block x block`` tile.

    ``[B, H, W, 1] -> [B, H, W, 1]``; coefficient (u, v) of tile (i, j) sits at row
    ``block*i + u`` and column ``block*j + v`` (the JPEG layout).
    """
    d = dct_matrix(block)
    return _blockwise(x, d, d.T, block)


def block_idct(c: jax.Array, block: int = 8) -> jax.Array:
    """Inverse of :func:`block_dct` (the transform is orthonormal, so this is ``D.T C D``)."""
    d = dct_matrix(block)
    return _blockwise(c, d.T, d, block)


def highpass_mask(cutoff: int, block: int = 8) -> np.ndarray:
    """``[block, block]`` mask: 0 where ``u < cutoff and v < cutoff`` else 1 (paper eq. 3).

    ``cutoff=0`` keeps every coefficient, ``cutoff=block`` removes them all. The formula is
    total (it needs no range check); configs are held to integers in 0..8 once, by
    ``aird_jax.models.validate_model_config`` (``model.dct_cutoff``).
    """
    u = np.arange(block)
    low = (u[:, None] < cutoff) & (u[None, :] < cutoff)
    return np.where(low, 0.0, 1.0).astype(np.float32)


def dct_highpass(gray: jax.Array, cutoff: int, block: int = 8) -> jax.Array:
    """Block DCT with the low-frequency ``cutoff x cutoff`` corner of every block zeroed.

    The filtered blocks stay in place, so the result is the single-channel map that the
    frequency stream's CNN consumes ("filtered blocks reassemble into a single-channel map").
    """
    mask = highpass_mask(cutoff, block)
    coeffs = block_dct(gray, block)
    b, h, w, _ = coeffs.shape
    tiled = jnp.asarray(np.tile(mask, (h // block, w // block)), dtype=coeffs.dtype)
    return coeffs * tiled[None, :, :, None]
