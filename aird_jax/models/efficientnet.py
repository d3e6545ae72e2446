"""EfficientNet B0..B7 (Tan & Le, 2019) and EfficientNet-Lite0..4 in Flax, classifier optional.

The layout mirrors the public PyTorch checkpoints (timm ``efficientnet_b*`` and
``tf_efficientnet_b*``) module for module, so that ImageNet weights port by renaming keys
(see ``port.py``):
stem ``conv_stem``/``bn1``, blocks ``blocks_{stage}_{index}`` with ``conv_pw``/``bn1``/``conv_dw``/
``bn2``/``se``/``conv_pwl``/``bn3``, head ``conv_head``/``bn2``, then global average pooling.

Two padding modes, because checkpoints differ: ``symmetric`` (PyTorch) and ``same`` (TensorFlow);
see ``aird_jax.ops.conv``, which also holds the two depthwise-convolution implementations
(``depthwise="auto"`` picks by backend at trace time). This module keeps the layers.

EfficientNet-Lite (the TF ``efficientnet/lite`` definition, for TFLite) is the same network with
ReLU6 instead of SiLU, no squeeze-excite, and stem (32) and head (1280) channels, as well as the
repeats of the first and last stage, left unscaled; its variants are ``efficientnet_lite0..4``
(``STYLES``). ``num_classes > 0`` adds the ImageNet classifier (dropout at the published rate,
then ``classifier``) for sanity checks of ported weights; the detector uses the pooled features.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aird_jax.models.common import TF_BN, TORCH_BN, batch_norm
from aird_jax.ops.conv import dense_conv, depthwise_conv

Dtype = Any
Padding = str  # "symmetric" | "same" (aird_jax.ops.conv.PADDINGS)

# (block type, repeats, kernel, stride, expansion, out channels); SE ratio 0.25 everywhere.
_BASE_ARCH: tuple[tuple[str, int, int, int, int, int], ...] = (
    ("ds", 1, 3, 1, 1, 16),
    ("ir", 2, 3, 2, 6, 24),
    ("ir", 2, 5, 2, 6, 40),
    ("ir", 3, 3, 2, 6, 80),
    ("ir", 3, 5, 1, 6, 112),
    ("ir", 4, 5, 2, 6, 192),
    ("ir", 1, 3, 1, 6, 320),
)
_SE_RATIO = 0.25
_STEM = 32
_HEAD = 1280

# name -> (width multiplier, depth multiplier, native resolution). Compound scaling from the paper;
# "efficientnet_tiny" is ours: a very small member for tests and the CPU quickstart.
VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet_b0": (1.0, 1.0, 224),
    "efficientnet_b1": (1.0, 1.1, 240),
    "efficientnet_b2": (1.1, 1.2, 260),
    "efficientnet_b3": (1.2, 1.4, 300),
    "efficientnet_b4": (1.4, 1.8, 380),
    "efficientnet_b5": (1.6, 2.2, 456),
    "efficientnet_b6": (1.8, 2.6, 528),
    "efficientnet_b7": (2.0, 3.1, 600),
    "efficientnet_tiny": (0.25, 0.3, 64),
}

# EfficientNet-Lite (TF efficientnet_lite_builder.py): same block table, different style.
VARIANTS.update(
    {
        "efficientnet_lite0": (1.0, 1.0, 224),
        "efficientnet_lite1": (1.0, 1.1, 240),
        "efficientnet_lite2": (1.1, 1.2, 260),
        "efficientnet_lite3": (1.2, 1.4, 280),
        "efficientnet_lite4": (1.4, 1.8, 300),
    }
)


@dataclasses.dataclass(frozen=True)
class Style:
    """What distinguishes a family: activation, squeeze-excite, fixed stem/head (and the repeats
    of the first and last stage)."""

    act: str = "silu"  # key of ACTIVATIONS
    se: bool = True
    fix_stem_head: bool = False


ACTIVATIONS = {"silu": nn.silu, "relu6": nn.relu6}
LITE = Style(act="relu6", se=False, fix_stem_head=True)
STYLES: dict[str, Style] = {v: (LITE if "_lite" in v else Style()) for v in VARIANTS}

# Published classifier dropout (only used when ``num_classes > 0``).
DROPOUT: dict[str, float] = {
    "efficientnet_b0": 0.2,
    "efficientnet_b1": 0.2,
    "efficientnet_b2": 0.3,
    "efficientnet_b3": 0.3,
    "efficientnet_b4": 0.4,
    "efficientnet_b5": 0.4,
    "efficientnet_b6": 0.5,
    "efficientnet_b7": 0.5,
    "efficientnet_tiny": 0.2,
    "efficientnet_lite0": 0.2,
    "efficientnet_lite1": 0.2,
    "efficientnet_lite2": 0.3,
    "efficientnet_lite3": 0.3,
    "efficientnet_lite4": 0.3,
}

# BatchNorm (epsilon, flax momentum) of the checkpoint source: PyTorch-trained (symmetric padding)
# or TF-trained (same padding, as in the original TF implementation).
BN_DEFAULTS: dict[str, tuple[float, float]] = {"symmetric": TORCH_BN, "same": TF_BN}


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Nearest multiple of ``divisor``, never more than 10% below ``v`` (EfficientNet rounding)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    kind: str  # "ds" (depthwise-separable) or "ir" (inverted residual / MBConv)
    stage: int
    index: int
    in_chs: int
    out_chs: int
    kernel: int
    stride: int
    expand: int
    se_chs: int  # 0: no squeeze-excite (EfficientNet-Lite)
    drop_path: float

    @property
    def name(self) -> str:
        return f"blocks_{self.stage}_{self.index}"

    @property
    def has_skip(self) -> bool:
        return self.stride == 1 and self.in_chs == self.out_chs


def arch_spec(variant: str, drop_path_rate: float = 0.2) -> tuple[int, list[BlockSpec], int]:
    """(stem channels, block specs, head channels) for a variant, by compound scaling."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet {variant!r}; choose from {sorted(VARIANTS)}")
    width, depth, _ = VARIANTS[variant]
    style = STYLES[variant]
    stem = _STEM if style.fix_stem_head else make_divisible(_STEM * width)
    repeats = [int(math.ceil(r * depth)) for _, r, *_ in _BASE_ARCH]
    if style.fix_stem_head:  # Lite: the first and last stage keep their repeats
        repeats[0], repeats[-1] = _BASE_ARCH[0][1], _BASE_ARCH[-1][1]
    total = sum(repeats)
    blocks: list[BlockSpec] = []
    in_chs, idx = stem, 0
    for stage, ((kind, _, k, s, e, c), n) in enumerate(zip(_BASE_ARCH, repeats)):
        out = make_divisible(c * width)
        for i in range(n):
            mid = in_chs * e
            # SE width is a fraction of the block INPUT channels, computed as in the reference
            # implementation (ratio divided by the expansion, applied to the expanded width).
            se = round(mid * (_SE_RATIO / e)) if style.se else 0
            blocks.append(
                BlockSpec(
                    kind,
                    stage,
                    i,
                    in_chs,
                    out,
                    k,
                    s if i == 0 else 1,
                    e,
                    se,
                    drop_path_rate * idx / total,
                )
            )
            in_chs, idx = out, idx + 1
    return stem, blocks, (_HEAD if style.fix_stem_head else make_divisible(_HEAD * width))


def num_features(variant: str) -> int:
    """Width of the pooled feature vector (1792 for B4, 1280 for every Lite)."""
    return arch_spec(variant)[2]


def _conv_init(groups_equal_out: bool = False) -> nn.initializers.Initializer:
    # "fan_out" normal init as in the reference EfficientNet; for depthwise kernels fan_out = k*k.
    if groups_equal_out:

        def init(key, shape, dtype=jnp.float32):
            std = math.sqrt(2.0 / (shape[0] * shape[1]))
            return std * jax.random.normal(key, shape, dtype)

        return init
    return nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class Conv(nn.Module):
    """Dense 2-D conv (HWIO kernel); 1x1 stride-1 convs run as a matmul (cheaper on CPU), kxk ones
    through :func:`~aird_jax.ops.conv.dense_conv`."""

    features: int
    kernel: int = 1
    stride: int = 1
    padding: Padding = "symmetric"
    use_bias: bool = False
    impl: str = "auto"  # kxk convs: ops.conv.dense_conv
    kernel_init: nn.initializers.Initializer | None = None  # None: fan-out normal (timm's)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.param(
            "kernel",
            self.kernel_init or _conv_init(),
            (self.kernel, self.kernel, x.shape[-1], self.features),
            self.param_dtype,
        )
        x, k = x.astype(self.dtype), k.astype(self.dtype)
        if self.kernel == 1 and self.stride == 1:
            # As a 2-D [pixels, C] matmul: with the 4-D operand XLA:CPU computed the kernel
            # gradient through a transposed copy and a generic dot (~3.7x slower at 56x56x32).
            y = (x.reshape(-1, x.shape[-1]) @ k[0, 0]).reshape(*x.shape[:-1], self.features)
        else:
            y = dense_conv(x, k, self.stride, self.padding, self.impl)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(self.dtype)
        return y


class DepthwiseConv(nn.Module):
    kernel: int
    stride: int = 1
    padding: Padding = "symmetric"
    impl: str = "auto"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.param(
            "kernel",
            _conv_init(True),
            (self.kernel, self.kernel, 1, x.shape[-1]),
            self.param_dtype,
        )
        return depthwise_conv(
            x.astype(self.dtype), k.astype(self.dtype), self.stride, self.padding, self.impl
        )


class SqueezeExcite(nn.Module):
    reduced: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kw = dict(use_bias=True, dtype=self.dtype, param_dtype=self.param_dtype)
        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = nn.silu(Conv(self.reduced, name="conv_reduce", **kw)(s))
        s = Conv(x.shape[-1], name="conv_expand", **kw)(s)
        return x * nn.sigmoid(s)


def drop_path(x: jax.Array, rate: float, rng: jax.Array) -> jax.Array:
    """Stochastic depth: drop the whole residual branch per sample, rescale the kept ones."""
    keep = jax.random.bernoulli(rng, 1.0 - rate, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))


class MBBlock(nn.Module):
    """Depthwise-separable ("ds") or inverted-residual MBConv ("ir") block, SE if ``se_chs``."""

    spec: BlockSpec
    padding: Padding
    depthwise: str
    bn_eps: float
    bn_momentum: float
    axis_name: str | None = None
    act: str = "silu"  # key of ACTIVATIONS
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def bn(self, name: str) -> nn.BatchNorm:
        preset = (self.bn_eps, self.bn_momentum)
        return batch_norm(name, self.axis_name, self.dtype, self.param_dtype, preset)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        sp = self.spec
        act = ACTIVATIONS[self.act]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        shortcut = x
        if sp.kind == "ir":
            x = Conv(sp.in_chs * sp.expand, name="conv_pw", **kw)(x)
            x = act(self.bn(name="bn1")(x, use_running_average=not train))
            dw_bn, out_bn = "bn2", "bn3"
        else:
            dw_bn, out_bn = "bn1", "bn2"
        x = DepthwiseConv(sp.kernel, sp.stride, self.padding, self.depthwise, name="conv_dw", **kw)(
            x
        )
        x = act(self.bn(name=dw_bn)(x, use_running_average=not train))
        if sp.se_chs:
            x = SqueezeExcite(sp.se_chs, name="se", **kw)(x)
        x = Conv(sp.out_chs, name="conv_pwl" if sp.kind == "ir" else "conv_pw", **kw)(x)
        x = self.bn(name=out_bn)(x, use_running_average=not train)
        if sp.has_skip:
            if train and sp.drop_path > 0:
                x = drop_path(x, sp.drop_path, self.make_rng("dropout"))
            x = x + shortcut
        return x


class EfficientNet(nn.Module):
    """EfficientNet feature extractor: ``[B, H, W, C] -> [B, num_features]`` (pooled).

    Inputs are expected already normalised (ImageNet mean/std); the detector does that.
    ``axis_name`` makes every BatchNorm use cross-replica statistics. ``num_classes > 0`` returns
    ImageNet-style logits instead (dropout ``DROPOUT[variant]``, then Dense ``classifier``).
    """

    variant: str = "efficientnet_b4"
    padding: Padding = "symmetric"
    drop_path_rate: float = 0.2
    depthwise: str = "auto"
    bn_eps: float | None = None  # None: per checkpoint source (BN_DEFAULTS[padding])
    bn_momentum: float | None = None
    axis_name: str | None = None
    num_classes: int = 0
    # True: return (pooled, maps), maps = the last feature map at each stride 2, 4, .., 32
    # (dense prediction heads, e.g. Face X-ray's boundary map).
    return_maps: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> Any:
        stem, blocks, head = arch_spec(self.variant, self.drop_path_rate)
        style = STYLES[self.variant]
        act = ACTIVATIONS[style.act]
        eps, mom = BN_DEFAULTS[self.padding]
        eps = eps if self.bn_eps is None else self.bn_eps
        mom = mom if self.bn_momentum is None else self.bn_momentum

        def bn(name: str) -> nn.BatchNorm:
            return batch_norm(name, self.axis_name, self.dtype, self.param_dtype, (eps, mom))

        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = Conv(stem, 3, 2, self.padding, name="conv_stem", **kw)(x)
        x = act(bn("bn1")(x, use_running_average=not train))
        maps = []
        for sp in blocks:
            if sp.stride > 1:
                maps.append(x)
            x = MBBlock(
                sp,
                self.padding,
                self.depthwise,
                eps,
                mom,
                self.axis_name,
                style.act,
                name=sp.name,
                **kw,
            )(x, train)
        x = Conv(head, name="conv_head", **kw)(x)
        x = act(bn("bn2")(x, use_running_average=not train))
        # Grad-CAM hooks (aird_jax/analysis/gradcam.py): the final feature map's value and an
        # additive zero whose gradient is the map's gradient. Both are no-ops unless a caller
        # asks for "intermediates"/"perturbations"; skipped at init, so the variables, the
        # parameter tree and the outputs are unchanged.
        if not self.is_initializing():
            self.sow("intermediates", "feature_map", x)
            x = self.perturb("feature_map", x)
        maps.append(x)
        x = jnp.mean(x, axis=(1, 2))
        if self.num_classes:
            x = nn.Dropout(DROPOUT[self.variant])(x, deterministic=not train)
            x = nn.Dense(self.num_classes, name="classifier", **kw)(x)
        return (x, maps) if self.return_maps else x
