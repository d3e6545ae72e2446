"""Meso-4 (Afchar et al., WIFS 2018), a baseline the paper compares against.

Four conv blocks (8/8/16/16 channels, kernels 3/5/5/5, ReLU, BatchNorm, max-pool 2/2/2/4 with
'same' padding), dropout 0.5, Dense 16 + LeakyReLU(0.1), dropout 0.5, classifier. Trained from
scratch, so its trunk is NOT named "rgb_backbone" (that name gets the 0.1x learning rate meant for
pretrained weights). The published model has one sigmoid output (27,977 trainable parameters at
256 px); ours has the project's 2-way softmax head and SupCon projection (``heads.py``).
The Dense-16 input is the flattened map, so the parameter count depends on the image size.

Interface as the detector's: raw RGB in [0, 1], [B, H, W, 3] -> ``{"logits", "embedding",
"features"}``; BatchNorm takes ``axis_name`` for cross-replica statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from aird_jax.models.common import TF_BN, batch_norm, check_images
from aird_jax.models.heads import output_heads
from aird_jax.models.registry import dtypes, register_model

Dtype = Any

MIN_SIZE = 32
# The published dropout, used whatever model.dropout (the detector's 0.3) says.
MESO4_DROPOUT = 0.5


class Meso4Trunk(nn.Module):
    """Meso-4 up to and including Dense 16 + LeakyReLU; returns the 16-d features."""

    axis_name: str | None = None
    dropout: float = MESO4_DROPOUT
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    # (channels, kernel, pool) per block, from the paper's Fig. 4 / the authors' Keras code.
    blocks: Sequence[tuple[int, int, int]] = ((8, 3, 2), (8, 5, 2), (16, 5, 2), (16, 5, 4))

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        for i, (ch, k, pool) in enumerate(self.blocks, start=1):
            # Keras order: Conv2D(activation="relu") -> BatchNormalization -> MaxPooling2D.
            x = nn.Conv(ch, (k, k), padding="SAME", name=f"conv{i}", **kw)(x)
            x = nn.relu(x)
            bn = batch_norm(f"bn{i}", self.axis_name, self.dtype, self.param_dtype, TF_BN)
            x = bn(x, use_running_average=not train)  # Keras BatchNormalization defaults
            x = nn.max_pool(x, (pool, pool), strides=(pool, pool), padding="SAME")
        x = x.reshape(x.shape[0], -1)  # NHWC flatten, as Keras' Flatten on channels_last
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = nn.Dense(16, name="fc", **kw)(x)
        return nn.leaky_relu(x, negative_slope=0.1)


class MesoNet(nn.Module):
    """Meso-4 with the project's heads. Input: raw RGB in [0, 1] (Meso-4's own rescale 1/255)."""

    embed_dim: int
    axis_name: str | None = None
    dropout: float = MESO4_DROPOUT
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "MesoNet", MIN_SIZE)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        feats = Meso4Trunk(self.axis_name, self.dropout, name="trunk", **kw)(x, train)
        return output_heads(
            feats, embed_dim=self.embed_dim, train=train, dropout=self.dropout, **kw
        )


@register_model("mesonet")
def build_mesonet(model_cfg: Any, axis_name: str | None = None) -> MesoNet:
    """Meso-4. Its dropout is the published 0.5, not model.dropout (the detector's 0.3)."""
    return MesoNet(embed_dim=int(model_cfg.embed_dim), axis_name=axis_name, **dtypes(model_cfg))
