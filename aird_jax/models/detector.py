"""The dual-stream detector (paper Sec. III, Fig. 1) and the Table III fusion variants.

``fusion``:
* ``late`` (the paper's model): EfficientNet features [F] ; frequency features [256] -> fusion MLP.
* ``early``: the high-pass DCT map is a 4th input channel of the EfficientNet stem, so the signals
  mix from the first layer (``load_pretrained`` zero-extends the ImageNet stem kernel).
* ``rgb_only`` / ``freq_only``: one stream -> the same fusion MLP and heads.

Fusion MLP: Dense 512 -> BatchNorm -> ReLU -> Dropout. Heads: classifier Dense 2; projection
Dense 256 -> ReLU -> Dense embed_dim -> L2-normalise (SupCon embedding).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aird_jax.models.efficientnet import EfficientNet
from aird_jax.models.frequency import FrequencyStream, highpass_map

Dtype = Any

FUSIONS = ("late", "early", "rgb_only", "freq_only")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class FusionMLP(nn.Module):
    features: int = 512
    dropout: float = 0.3
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        x = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="dense")(x)
        x = nn.BatchNorm(
            use_running_average=not train,
            momentum=0.9,
            epsilon=1e-5,
            axis_name=self.axis_name,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="bn",
        )(x)
        return nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))


class ProjectionHead(nn.Module):
    hidden: int = 256
    embed_dim: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = nn.relu(nn.Dense(self.hidden, name="dense0", **kw)(x))
        x = nn.Dense(self.embed_dim, name="dense1", **kw)(x)
        return l2_normalize(x.astype(jnp.float32))


class Detector(nn.Module):
    """Raw RGB ``[B, H, W, 3]`` in [0, 1] -> ``{"logits", "embedding", "features"}``."""

    backbone: str = "efficientnet_b4"
    padding: str = "symmetric"
    fusion: str = "late"
    dct_cutoff: int = 4
    dropout: float = 0.3
    freq_dropout: float = 0.3
    embed_dim: int = 128
    drop_path_rate: float = 0.2
    depthwise: str = "auto"
    fused_dim: int = 512
    freq_dim: int = 256
    num_classes: int = 2
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"Detector expects raw RGB images [batch, height, width, 3] in [0, 1]; got "
                f"shape {tuple(x.shape)}."
            )
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion={self.fusion!r}; choose from {FUSIONS}")
        if self.fusion != "rgb_only" and (x.shape[1] % 8 or x.shape[2] % 8):
            raise ValueError(
                f"the 8x8 block DCT needs height and width divisible by 8; got "
                f"{x.shape[1]}x{x.shape[2]}. Set data.image_size to a multiple of 8 (e.g. 224)."
            )
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = x.astype(jnp.float32)
        mean = jnp.asarray(IMAGENET_MEAN, jnp.float32)
        std = jnp.asarray(IMAGENET_STD, jnp.float32)
        rgb = (x - mean) / std
        freq = highpass_map(x, self.dct_cutoff) if self.fusion != "rgb_only" else None

        def backbone(inp: jax.Array) -> jax.Array:
            return EfficientNet(
                self.backbone,
                self.padding,
                self.drop_path_rate,
                self.depthwise,
                axis_name=self.axis_name,
                name="rgb_backbone",
                **kw,
            )(inp, train)

        def freq_stream(inp: jax.Array) -> jax.Array:
            return FrequencyStream(
                out_dim=self.freq_dim,
                dropout=self.freq_dropout,
                axis_name=self.axis_name,
                name="freq_stream",
                **kw,
            )(inp, train)

        if self.fusion == "late":
            feats = jnp.concatenate([backbone(rgb), freq_stream(freq)], axis=-1)
        elif self.fusion == "early":
            feats = backbone(jnp.concatenate([rgb, freq], axis=-1))
        elif self.fusion == "rgb_only":
            feats = backbone(rgb)
        else:
            feats = freq_stream(freq)
        fused = FusionMLP(self.fused_dim, self.dropout, self.axis_name, name="fusion", **kw)(
            feats, train
        )
        logits = nn.Dense(self.num_classes, name="classifier", **kw)(fused)
        emb = ProjectionHead(256, self.embed_dim, name="projection", **kw)(fused)
        return {
            "logits": logits.astype(jnp.float32),
            "embedding": emb,
            "features": fused.astype(jnp.float32),
        }
