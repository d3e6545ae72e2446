"""F3-Net (Qian et al., "Thinking in Frequency: Face Forgery Detection by Mining Frequency-aware
Clues", ECCV 2020), a baseline.

Two frequency views of the face, each read by an ImageNet Xception, exchanging messages twice:

* **FAD** (frequency-aware decomposition, paper Sec. 3.1): DCT of each colour channel of the
  whole image, multiplied by K band filters ``f_base + sigma(f_w)`` (fixed binary band + a
  learnable H x W residual, ``sigma(x) = (1 - e^-x) / (1 + e^-x)``), inverse DCT. The bands are
  triangles of the spectrum by area, as the paper states them: low = the first 1/16, middle =
  1/16 to 1/8, high = the rest; plus an all-pass band (the 4th filter of the authors' release
  and DeepfakeBench, which makes the 12 input channels of the FAD Xception). Band edges are on
  ``i / H + j / W`` (the anti-diagonals of the DCT grid), so the bands partition the spectrum
  exactly; ``fad_band_masks``.
* **LFS** (local frequency statistics, Sec. 3.2): DCT of every 10 x 10 window of the gray face
  (stride 2, zero padding 4, as one convolution with the 100 DCT basis images), then for M = 6
  bands of the window's spectrum (equal-width ranges of ``u + v``, each with a learnable
  residual like FAD's) the log10 of the band's mean absolute coefficient:
  ``q_i = log10(| |D(p)| . (h_base_i + sigma(h_w_i)) / n_i | + eps)``. The [B, H/2, W/2, 6] map
  is the input of the second Xception, whose first convolution has stride 1 for that reason.
* **MixBlock** (Sec. 3.3, Fig. 5), after the 7th and the 12th Xception block: per channel, the
  row-to-row attention ``softmax(Q_fad K_fad^T + Q_lfs K_lfs^T)`` (1x1-conv queries and keys of
  both streams, rows of the feature map as tokens) re-weights the *other* stream's rows; the
  message passes a depthwise 1x1 conv and BatchNorm and is added, scaled by ``2 sigmoid(g) - 1``
  with g initialised to 0, so a MixBlock starts as the identity and the pretrained streams start
  undisturbed. The attention is applied as a matrix product (A @ rows); the authors' release
  multiplies element-wise, which only type-checks for square maps.
* Each stream ends with Xception's exit flow and average pooling; the two 2048-d vectors are
  concatenated (4096-d ``features``) into the project's heads (``heads.py``).

Both trunks live under the ``rgb_backbone`` module (``fad``, ``lfs``: ImageNet weights, 0.1x
LR); ``adapt_f3net_pretrained`` maps the ported 3-channel trunk onto both: FAD's 12-channel stem
tiles the RGB filters over the 4 bands divided by 2 (low + middle + high = all = the image, so
the four bands sum to twice the image and the stem starts with the ImageNet response, up to the
learnable residuals); LFS's 6-channel stem gives every channel the RGB filters' sum / 6 (the
response to a constant input is preserved). DCT and FFT work happens in at least float32.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from aird_jax.models.baselines.xception import (
    MIN_SIZE,
    XceptionDetector,
    XceptionTrunk,
    build_detector,
    heads,
    normalise,
    with_stem_kernel,
)
from aird_jax.models.common import batch_norm, check_images
from aird_jax.models.registry import BACKBONE, register_model
from aird_jax.ops.dct import dct_matrix, rgb_to_gray

Dtype = Any

# FAD: low / middle band edges as fractions of the spectrum's area (paper: 1/16, 1/8).
FAD_AREA_FRACTIONS = (1 / 16, 1 / 8)
FAD_BANDS = 4  # low, middle, high, all
# LFS: window, stride, padding, bands (paper Sec. 3.2); eps of the log.
LFS_WINDOW, LFS_STRIDE, LFS_PAD, LFS_BANDS = 10, 2, 4, 6
LFS_EPS = 1e-3  # gray levels in [0, 255]: a floor far below one level's DCT magnitude
LFS_SCALE = 255.0
FILTER_INIT_STD = 0.1  # learnable filter residuals start near 0 (sigma(0) = 0)


def soft_sign(x: jax.Array) -> jax.Array:
    """The paper's sigma: (1 - e^-x) / (1 + e^-x) = tanh(x / 2), in (-1, 1)."""
    return jnp.tanh(x / 2)


# ------------------------------------------------------------------------------------ FAD


def fad_band_masks(h: int, w: int) -> np.ndarray:
    """Binary [4, h, w] masks over the DCT grid: low, middle, high (a partition), all-pass.

    Position (i, j) sits at ``r = i / h + j / w``; the triangle ``r <= d`` covers ``d^2 / 2`` of
    the spectrum, so the area fractions 1/16 and 1/8 give the edges ``d = sqrt(2 f)``.
    """
    r = np.arange(h)[:, None] / h + np.arange(w)[None, :] / w
    d1, d2 = (math.sqrt(2 * f) for f in FAD_AREA_FRACTIONS)
    low = r <= d1
    mid = (r > d1) & (r <= d2)
    high = r > d2
    return np.stack([low, mid, high, np.ones_like(low)]).astype(np.float64)


def fad_decompose(x: jax.Array, filters: jax.Array) -> jax.Array:
    """x [B, H, W, C], filters [K, H, W] -> [B, H, W, K * C] (band-major: k * C + c): the
    inverse 2-D DCT (orthonormal, type II) of each channel's DCT times each filter."""
    dh = jnp.asarray(dct_matrix(x.shape[1]), x.dtype)
    dw = jnp.asarray(dct_matrix(x.shape[2]), x.dtype)
    coef = jnp.einsum("uh,bhwc,vw->buvc", dh, x, dw)
    bands = jnp.einsum("kuv,buvc->bkuvc", filters.astype(x.dtype), coef)
    out = jnp.einsum("uh,bkuvc,vw->bhwkc", dh, bands, dw)
    return out.reshape(*x.shape[:3], -1)


class FADHead(nn.Module):
    """Normalised RGB [B, H, W, 3] -> the 12 band images [B, H, W, 12]."""

    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        base = fad_band_masks(x.shape[1], x.shape[2])
        learn = self.param(
            "filters", nn.initializers.normal(FILTER_INIT_STD), base.shape, self.param_dtype
        )
        return fad_decompose(x, jnp.asarray(base, x.dtype) + soft_sign(learn.astype(x.dtype)))


# ------------------------------------------------------------------------------------ LFS


def lfs_band_masks(window: int = LFS_WINDOW, bands: int = LFS_BANDS) -> np.ndarray:
    """Binary [M, S, S] masks: band m holds the coefficients with
    ``m * 2S / M <= u + v < (m + 1) * 2S / M`` (equal widths over u + v in [0, 2S - 2])."""
    s = np.add.outer(np.arange(window), np.arange(window))
    edges = np.arange(bands + 1) * 2 * window / bands
    return np.stack([(s >= lo) & (s < hi) for lo, hi in zip(edges[:-1], edges[1:])]).astype(
        np.float64
    )


def lfs_output_size(n: int) -> int:
    return (n + 2 * LFS_PAD - LFS_WINDOW) // LFS_STRIDE + 1


def window_dct(gray: jax.Array, window: int = LFS_WINDOW) -> jax.Array:
    """gray [B, H, W, 1] -> [B, H', W', S * S]: the orthonormal 2-D DCT of every zero-padded
    S x S window (stride 2, padding 4); coefficient (u, v) in channel u * S + v."""
    d = dct_matrix(window)
    # Basis image of (u, v): D[u, x] D[v, y] as a conv kernel [S, S, 1, S * S].
    basis = np.einsum("ux,vy->xyuv", d, d).reshape(window, window, 1, window * window)
    return jax.lax.conv_general_dilated(
        gray,
        jnp.asarray(basis, gray.dtype),
        window_strides=(LFS_STRIDE, LFS_STRIDE),
        padding=((LFS_PAD, LFS_PAD), (LFS_PAD, LFS_PAD)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )


def lfs_statistics(coef: jax.Array, filters: jax.Array) -> jax.Array:
    """coef [..., S * S], filters [M, S, S] (already ``base + sigma(w)``) ->
    [..., M]: ``log10(| sum |coef| * filter / n_band | + eps)``, n_band = the band's size."""
    base = lfs_band_masks(filters.shape[1], filters.shape[0])
    n = jnp.asarray(base.sum(axis=(1, 2)), coef.dtype)
    weights = filters.reshape(filters.shape[0], -1).astype(coef.dtype) / n[:, None]
    s = jnp.einsum("...k,mk->...m", jnp.abs(coef), weights, precision=jax.lax.Precision.HIGHEST)
    return jnp.log10(jnp.abs(s) + LFS_EPS)


class LFSHead(nn.Module):
    """Raw RGB [B, H, W, 3] in [0, 1] -> band statistics [B, H', W', 6]."""

    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        base = lfs_band_masks()
        learn = self.param(
            "filters", nn.initializers.normal(FILTER_INIT_STD), base.shape, self.param_dtype
        )
        coef = window_dct(rgb_to_gray(x) * LFS_SCALE)
        return lfs_statistics(coef, jnp.asarray(base, x.dtype) + soft_sign(learn.astype(x.dtype)))


# ------------------------------------------------------------------------------- MixBlock


class ChannelAffine(nn.Module):
    """A depthwise 1x1 convolution with bias: a per-channel scale and shift."""

    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
        return x * scale.astype(x.dtype) + bias.astype(x.dtype)


def row_attention(qf: jax.Array, kf: jax.Array, ql: jax.Array, kl: jax.Array) -> jax.Array:
    """Per channel, rows as tokens: ``softmax_j(sum_w qf[i,w] kf[j,w] + ql[i,w] kl[j,w])``.
    Inputs [B, H, W, C] -> [B, C, H, H] (float32 at least, for the softmax)."""
    ft = jnp.promote_types(qf.dtype, jnp.float32)
    energy = jnp.einsum("biwc,bjwc->bcij", qf.astype(ft), kf.astype(ft)) + jnp.einsum(
        "biwc,bjwc->bcij", ql.astype(ft), kl.astype(ft)
    )
    return jax.nn.softmax(energy, axis=-1)


class MixBlock(nn.Module):
    """Cross-attention fusion of the FAD and LFS feature maps (same shape [B, H, W, C])."""

    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, xf: jax.Array, xl: jax.Array, train: bool = False
    ) -> tuple[jax.Array, jax.Array]:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        c = xf.shape[-1]
        proj = lambda name, x: nn.Dense(c, name=name, **kw)(x)  # a 1x1 conv with bias
        att = row_attention(
            proj("fad_query", xf), proj("fad_key", xf), proj("lfs_query", xl), proj("lfs_key", xl)
        )

        def message(x: jax.Array, gate_name: str) -> jax.Array:
            gate = self.param(gate_name, nn.initializers.zeros, (), self.param_dtype)
            m = jnp.einsum("bcij,bjwc->biwc", att, x.astype(att.dtype))
            return (m * (2 * jax.nn.sigmoid(gate.astype(att.dtype)) - 1)).astype(x.dtype)

        def bn(name: str) -> nn.BatchNorm:
            return batch_norm(
                name, self.axis_name, self.dtype, self.param_dtype, use_running_average=not train
            )

        aff = lambda name, x: ChannelAffine(self.param_dtype, name=name)(x)
        yf = xf + bn("fad_bn")(aff("fad_conv", message(xl, "lfs_gamma")))
        yl = xl + bn("lfs_bn")(aff("lfs_conv", message(xf, "fad_gamma")))
        return yf, yl


def mixblock_param_count(c: int) -> int:
    """Independent count: 4 1x1 convs (C*C + C), 2 depthwise 1x1 convs (2C), 2 BN (2C), 2 gates."""
    return 4 * (c * c + c) + 2 * 2 * c + 2 * 2 * c + 2


# ---------------------------------------------------------------------------------- F3-Net


class XceptionPair(nn.Module):
    """The two trunks (``fad``: stride-2 stem on 12 channels; ``lfs``: stride-1 stem on 6), run
    stage by stage so MixBlocks can sit between stages."""

    axis_name: str | None = None
    depthwise: str = "native"
    width: float = 1.0
    middle_blocks: int = 8
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(
        self, stream: str, x: jax.Array, train: bool, start: int, stop: int | None
    ) -> jax.Array:
        trunk = XceptionTrunk(
            self.axis_name,
            self.depthwise,
            self.width,
            self.middle_blocks,
            first_stride=1 if stream == "lfs" else 2,
            name=stream,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        return trunk(x, train, start, stop)


def mix_stages(middle_blocks: int) -> tuple[int, int]:
    """Trunk stages after which a MixBlock sits: the middle of the middle flow (block 7 of 12 in
    Xception) and the exit block (block 12); stage i = block i (stage 0 is the stem)."""
    return 3 + math.ceil(middle_blocks / 2), 3 + middle_blocks + 1


class F3Net(XceptionDetector):
    """FAD and LFS streams, two MixBlocks, concatenated pooled features, the project's heads."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "F3-Net", MIN_SIZE)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        ft = jnp.promote_types(x.dtype, jnp.float32)
        fad = FADHead(self.param_dtype, name="fad_head")(normalise(x).astype(ft)).astype(self.dtype)
        lfs = LFSHead(self.param_dtype, name="lfs_head")(x.astype(ft)).astype(self.dtype)
        streams = XceptionPair(
            self.axis_name, self.depthwise, self.width, self.middle_blocks, name=BACKBONE, **kw
        )
        start = 0
        for j, stage in enumerate(mix_stages(self.middle_blocks), start=1):
            fad = streams("fad", fad, train, start, stage + 1)
            lfs = streams("lfs", lfs, train, start, stage + 1)
            if lfs.shape != fad.shape:
                # The streams meet at the same size for 224 and 299 px (and the 32 px smoke);
                # other sizes can differ by a pixel: resample LFS onto FAD's grid.
                lfs = jax.image.resize(lfs, fad.shape, "linear")
            fad, lfs = MixBlock(self.axis_name, name=f"mix{j}", **kw)(fad, lfs, train)
            start = stage + 1
        feats = jnp.concatenate(
            [streams("fad", fad, train, start, None), streams("lfs", lfs, train, start, None)],
            axis=-1,
        )
        return heads(self, feats, train)


# ------------------------------------------------------------------------- pretrained, builders


def f3net_stem_kernels(rgb_kernel: Any, lfs_channels: int) -> tuple[jax.Array, jax.Array]:
    """ImageNet stem [3, 3, 3, C] -> (FAD [3, 3, 12, C], LFS [3, 3, lfs_channels, C])."""
    k = jnp.asarray(rgb_kernel)
    fad = jnp.concatenate([k] * FAD_BANDS, axis=2) / 2  # the 4 bands sum to 2x the image
    lfs = jnp.repeat(jnp.sum(k, axis=2, keepdims=True) / lfs_channels, lfs_channels, axis=2)
    return fad, lfs


def adapt_f3net_pretrained(src: Any, dst: Any) -> dict:
    """`load_pretrained` hook: the ported trunk into both streams, with their stems adapted."""
    if "conv1" not in src:  # batch_stats: the same statistics in both streams
        return {"fad": dict(src), "lfs": dict(src)}
    lfs_channels = dst["lfs"]["conv1"]["kernel"].shape[2]
    fad_k, lfs_k = f3net_stem_kernels(src["conv1"]["kernel"], lfs_channels)
    return {"fad": with_stem_kernel(src, fad_k), "lfs": with_stem_kernel(src, lfs_k)}


@register_model("f3net", adapt_pretrained=adapt_f3net_pretrained)
def build_f3net(model_cfg: Any, axis_name: str | None = None, **variant: Any) -> F3Net:
    """F3-Net on two full Xceptions (ImageNet weights through model.pretrained)."""
    return build_detector(F3Net, model_cfg, axis_name, **variant)


@register_model("f3net_tiny", adapt_pretrained=adapt_f3net_pretrained)
def build_f3net_tiny(model_cfg: Any, axis_name: str | None = None) -> F3Net:
    """F3-Net on two xception_tiny trunks (quarter width, one middle block): CPU tests, smoke."""
    return build_f3net(model_cfg, axis_name, width=0.25, middle_blocks=1)
