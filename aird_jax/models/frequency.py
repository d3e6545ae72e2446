"""Frequency stream (paper Sec. III-B): BT.601 gray -> 8x8 block DCT high-pass -> small CNN.

The DCT map is computed from RAW [0, 1] pixels (not ImageNet-normalised); the CNN is three
[3x3 stride-2 conv -> BatchNorm -> ReLU] blocks with 64/128/256 channels, global average pooling,
dropout and a Dense 256. Kaiming init; trained from scratch (ImageNet weights mean nothing here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aird_jax.models.common import batch_norm
from aird_jax.models.efficientnet import Conv
from aird_jax.ops.dct import dct_highpass, rgb_to_gray

Dtype = Any

# He et al. (2015) normal init, fan_in, ReLU gain: the paper's "Kaiming initialization".
kaiming = nn.initializers.kaiming_normal()


def highpass_map(rgb01: jax.Array, cutoff: int) -> jax.Array:
    """``[B, H, W, 3]`` raw RGB in [0, 1] -> ``[B, H, W, 1]`` high-pass block-DCT map (float32)."""
    return dct_highpass(rgb_to_gray(rgb01.astype(jnp.float32)), cutoff=cutoff)


class FrequencyStream(nn.Module):
    """``[B, H, W, 1]`` DCT map -> ``[B, out_dim]`` spectral features."""

    dropout: float
    channels: Sequence[int] = (64, 128, 256)
    out_dim: int = 256
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.astype(self.dtype)
        for i, c in enumerate(self.channels):
            # The variables (conv{i}/kernel, 3x3 HWIO, Kaiming) and maths of nn.Conv(c, (3, 3),
            # strides=2, padding=1, use_bias=False), run through ops.conv.dense_conv (on CPU as a
            # patches matmul: forward + gradient 1.5-1.9x faster than XLA:CPU's convolution).
            x = Conv(
                c,
                3,
                2,
                "symmetric",
                kernel_init=kaiming,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"conv{i}",
            )(x)
            bn = batch_norm(f"bn{i}", self.axis_name, self.dtype, self.param_dtype)
            x = bn(x, use_running_average=not train)
            x = nn.relu(x)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(
            self.out_dim,
            kernel_init=kaiming,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="dense",
        )(x)
