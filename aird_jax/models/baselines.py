"""Baselines the paper compares against: MesoNet (Meso-4) and Xception.

Both keep the detector's interface (contract, "Models"): input raw RGB in [0, 1], [B, H, W, 3];
output a dict with `logits` [B, 2], `embedding` [B, embed_dim] (L2-normalised, so the same SupCon
loss can be switched on) and `features` (the trunk's pooled features). BatchNorm takes
`axis_name` for cross-replica statistics.

* Meso-4 (Afchar et al., WIFS 2018): four conv blocks (8/8/16/16 channels, kernels 3/5/5/5, ReLU,
  BatchNorm, max-pool 2/2/2/4 with 'same' padding), dropout 0.5, Dense 16 + LeakyReLU(0.1),
  dropout 0.5, classifier. Trained from scratch, so its trunk is NOT named "rgb_backbone" (that
  name gets the 0.1x learning rate meant for pretrained weights). The published model has one
  sigmoid output (27,977 trainable parameters at 256 px); ours has the project's 2-way softmax head.
  The Dense-16 input is the flattened map, so the parameter count depends on the image size.
* Xception (Chollet, CVPR 2017) as used by FaceForensics++ (Roessler et al. 2019): the ImageNet
  network with its classifier replaced, global-average-pooled 2048-d features, dropout, 2-way
  head. The trunk mirrors timm's `legacy_xception` layer for layer (module names follow its
  state-dict keys) so `port_xception.py` can map the ImageNet weights strictly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

# Shared with the detector: the depthwise conv (native grouped conv or shifted slices, chosen per
# backend) and the SupCon projection head, so baselines and detector train the same way.
from aird_jax.models.detector import ProjectionHead
from aird_jax.models.efficientnet import DepthwiseConv, resolve_depthwise

Dtype = Any

# timm legacy_xception normalises with mean = std = 0.5 (Keras "tf" preprocessing).
XCEPTION_MEAN = (0.5, 0.5, 0.5)
XCEPTION_STD = (0.5, 0.5, 0.5)
# PyTorch BatchNorm2d defaults (the ImageNet weights were trained/ported with them).
_TORCH_BN = {"epsilon": 1e-5, "momentum": 0.9}
# Keras BatchNormalization defaults (the original Meso-4 was written in Keras).
_KERAS_BN = {"epsilon": 1e-3, "momentum": 0.99}

# kaiming_normal(mode="fan_out", nonlinearity="relu"), the init timm uses for Xception.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

MIN_SIZE = 32


def check_images(x: jax.Array, name: str, min_size: int = MIN_SIZE) -> None:
    """Fail early with a readable message instead of a shape error deep inside a conv."""
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"{name} expects raw RGB images shaped [batch, height, width, 3] in [0, 1]; "
            f"got shape {tuple(x.shape)}."
        )
    if min(x.shape[1], x.shape[2]) < min_size:
        raise ValueError(
            f"{name} needs images of at least {min_size}x{min_size} pixels; got "
            f"{x.shape[1]}x{x.shape[2]}. Set data.image_size to {min_size} or more."
        )


# ----------------------------------------------------------------------------------- Meso-4


class Meso4Trunk(nn.Module):
    """Meso-4 up to and including Dense 16 + LeakyReLU; returns the 16-d features."""

    axis_name: str | None = None
    dropout: float = 0.5
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
            x = nn.BatchNorm(
                use_running_average=not train,
                axis_name=self.axis_name,
                name=f"bn{i}",
                **_KERAS_BN,
                **kw,
            )(x)
            x = nn.max_pool(x, (pool, pool), strides=(pool, pool), padding="SAME")
        x = x.reshape(x.shape[0], -1)  # NHWC flatten, as Keras' Flatten on channels_last
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
        x = nn.Dense(16, name="fc", **kw)(x)
        return nn.leaky_relu(x, negative_slope=0.1)


class MesoNet(nn.Module):
    """Meso-4 with the project's heads. Input: raw RGB in [0, 1] (Meso-4's own rescale 1/255)."""

    axis_name: str | None = None
    dropout: float = 0.5
    embed_dim: int = 128
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "MesoNet")
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        feats = Meso4Trunk(self.axis_name, self.dropout, name="trunk", **kw)(x, train)
        h = nn.Dropout(self.dropout)(feats, deterministic=not train)
        logits = nn.Dense(2, name="classifier", **kw)(h)
        emb = ProjectionHead(embed_dim=self.embed_dim, name="projection", **kw)(feats)
        return {
            "logits": logits.astype(jnp.float32),
            "embedding": emb,
            "features": feats.astype(jnp.float32),
        }


# ----------------------------------------------------------------------------------- Xception


class SeparableConv(nn.Module):
    """timm's SeparableConv2d: 3x3 depthwise (`conv1`) then 1x1 pointwise, no biases."""

    features: int
    depthwise: str = "native"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = DepthwiseConv(3, 1, "symmetric", self.depthwise, name="conv1", **kw)(x)
        return nn.Conv(
            self.features, (1, 1), use_bias=False, kernel_init=_conv_init, name="pointwise", **kw
        )(x)


class XceptionBlock(nn.Module):
    """timm's xception.Block. Sub-modules are named `rep_<i>` after their index in the PyTorch
    `rep` Sequential (ReLUs and the pool take indices too), so the port is a name mapping."""

    in_ch: int
    out_ch: int
    reps: int
    strides: int = 1
    start_with_relu: bool = True
    grow_first: bool = True
    axis_name: str | None = None
    depthwise: str = "native"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def layer_plan(self) -> list[tuple[str, int]]:
        """[(kind, channels)] in PyTorch `rep` order; kind in relu/sep/bn."""
        plan: list[tuple[str, int]] = []
        for i in range(self.reps):
            if self.grow_first:
                outc = self.out_ch
            else:
                outc = self.in_ch if i < self.reps - 1 else self.out_ch
            plan += [("relu", 0), ("sep", outc), ("bn", outc)]
        return plan if self.start_with_relu else plan[1:]

    @nn.compact
    def __call__(self, inp: jax.Array, train: bool = False) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        bn = lambda name: nn.BatchNorm(
            use_running_average=not train, axis_name=self.axis_name, name=name, **_TORCH_BN, **kw
        )
        x = inp
        for idx, (kind, ch) in enumerate(self.layer_plan()):
            if kind == "relu":
                x = nn.relu(x)
            elif kind == "sep":
                x = SeparableConv(ch, self.depthwise, name=f"rep_{idx}", **kw)(x)
            else:
                x = bn(f"rep_{idx}")(x)
        if self.strides != 1:
            # MaxPool2d(3, s, padding=1): padded with -inf, floor output size, as reduce_window.
            x = nn.max_pool(x, (3, 3), strides=(self.strides,) * 2, padding=((1, 1), (1, 1)))
        if self.out_ch != self.in_ch or self.strides != 1:
            skip = nn.Conv(
                self.out_ch,
                (1, 1),
                strides=(self.strides,) * 2,
                padding="VALID",
                use_bias=False,
                kernel_init=_conv_init,
                name="skip",
                **kw,
            )(inp)
            skip = bn("skipbn")(skip)
        else:
            skip = inp
        return x + skip


XCEPTION_FEATURES = 2048


def _width(ch: int, width: float) -> int:
    return ch if width == 1.0 else max(8, int(round(ch * width / 8)) * 8)


def xception_blocks(
    width: float = 1.0, middle_blocks: int = 8
) -> list[tuple[int, int, int, int, bool, bool]]:
    """(in, out, reps, strides, start_with_relu, grow_first) for block1..blockN: entry flow (3
    blocks), middle flow (8 in Xception), exit block. Non-default width/middle_blocks only for
    the tiny test-scale variant."""
    w = lambda c: _width(c, width)
    return [
        (w(64), w(128), 2, 2, False, True),
        (w(128), w(256), 2, 2, True, True),
        (w(256), w(728), 2, 2, True, True),
        *[(w(728), w(728), 3, 1, True, True)] * middle_blocks,
        (w(728), w(1024), 2, 2, True, False),
    ]


class XceptionTrunk(nn.Module):
    """Xception without its classifier: normalised image -> [B, 2048] pooled features.

    `width` / `middle_blocks` exist only for "xception_tiny"; the defaults are Xception."""

    axis_name: str | None = None
    depthwise: str = "native"
    width: float = 1.0
    middle_blocks: int = 8
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        w = lambda c: _width(c, self.width)
        bn = lambda name: nn.BatchNorm(
            use_running_average=not train, axis_name=self.axis_name, name=name, **_TORCH_BN, **kw
        )
        conv = lambda ch, stride, name: nn.Conv(
            w(ch), (3, 3), strides=(stride, stride), padding="VALID", use_bias=False,
            kernel_init=_conv_init, name=name, **kw,
        )  # fmt: skip
        sep = lambda ch, name: SeparableConv(w(ch), self.depthwise, name=name, **kw)
        x = nn.relu(bn("bn1")(conv(32, 2, "conv1")(x)))
        x = nn.relu(bn("bn2")(conv(64, 1, "conv2")(x)))
        blocks = xception_blocks(self.width, self.middle_blocks)
        for i, (cin, cout, reps, s, swr, gf) in enumerate(blocks, start=1):
            x = XceptionBlock(
                cin, cout, reps, s, swr, gf, self.axis_name, self.depthwise, name=f"block{i}", **kw
            )(x, train)
        x = nn.relu(bn("bn3")(sep(1536, "conv3")(x)))
        x = nn.relu(bn("bn4")(sep(XCEPTION_FEATURES, "conv4")(x)))
        # Pool in float32 whatever the compute dtype: a 2048-wide mean in bf16 loses digits.
        return jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2))


class XceptionNet(nn.Module):
    """The FaceForensics++ Xception baseline with the project's heads."""

    axis_name: str | None = None
    dropout: float = 0.5
    embed_dim: int = 128
    depthwise: str = "auto"
    width: float = 1.0
    middle_blocks: int = 8
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "Xception")
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        mean = jnp.asarray(XCEPTION_MEAN, x.dtype)
        std = jnp.asarray(XCEPTION_STD, x.dtype)
        trunk = XceptionTrunk(
            self.axis_name,
            self.depthwise,
            self.width,
            self.middle_blocks,
            name="rgb_backbone",
            **kw,
        )
        feats = trunk((x - mean) / std, train)
        h = nn.Dropout(self.dropout)(feats, deterministic=not train)
        logits = nn.Dense(2, name="classifier", **kw)(h)
        emb = ProjectionHead(embed_dim=self.embed_dim, name="projection", **kw)(feats)
        return {"logits": logits.astype(jnp.float32), "embedding": emb, "features": feats}


# ----------------------------------------------------------------------------------- builders


def _cfg(model_cfg: ml_collections.ConfigDict, key: str, default: Any) -> Any:
    return model_cfg.get(key, default) if hasattr(model_cfg, "get") else default


def _dtypes(model_cfg: ml_collections.ConfigDict) -> dict[str, Dtype]:
    out = {}
    for key in ("dtype", "param_dtype"):
        name = _cfg(model_cfg, key, "float32")
        if name not in ("float32", "bfloat16", "float16", "float64"):
            raise ValueError(
                f"model.{key} must be one of float32, bfloat16, float16, float64; got {name!r}."
            )
        out[key] = jnp.dtype(name)
    return out


def build_mesonet(model_cfg: ml_collections.ConfigDict, axis_name: str | None = None) -> MesoNet:
    """Meso-4. Its dropout is the published 0.5, not model.dropout (the detector's 0.3)."""
    return MesoNet(
        axis_name=axis_name,
        dropout=0.5,
        embed_dim=_cfg(model_cfg, "embed_dim", 128),
        **_dtypes(model_cfg),
    )


def build_xception(
    model_cfg: ml_collections.ConfigDict, axis_name: str | None = None, **variant: Any
) -> XceptionNet:
    """Xception; FF++ used dropout 0.5 before its 2-way head, so that is used here too."""
    depthwise = _cfg(model_cfg, "depthwise", "auto")
    resolve_depthwise(depthwise)  # validate now, before any compile
    return XceptionNet(
        axis_name=axis_name,
        dropout=0.5,
        embed_dim=_cfg(model_cfg, "embed_dim", 128),
        depthwise=depthwise,
        **variant,
        **_dtypes(model_cfg),
    )


def build_xception_tiny(
    model_cfg: ml_collections.ConfigDict, axis_name: str | None = None
) -> XceptionNet:
    """Quarter-width Xception with one middle-flow block (0.6M trunk parameters instead of 20.8M):
    the same code path at a size that suits CPU smoke runs and tests, like efficientnet_tiny for
    the detector. Not the baseline; no pretrained weights fit it."""
    return build_xception(model_cfg, axis_name, width=0.25, middle_blocks=1)


BASELINES: dict[str, Callable[..., nn.Module]] = {
    "mesonet": build_mesonet,
    "xception": build_xception,
    "xception_tiny": build_xception_tiny,
}
