"""Xception (Chollet, CVPR 2017) as used by FaceForensics++ (Roessler et al. 2019), a baseline.

The ImageNet network with its classifier replaced: global-average-pooled 2048-d features, dropout,
the project's 2-way head and SupCon projection (``heads.py``). The trunk mirrors timm's
`legacy_xception` layer for layer (module names follow its state-dict keys) so `port_xception.py`
can map the ImageNet weights strictly; it is named "rgb_backbone" (pretrained: 0.1x LR).

Interface as the detector's: raw RGB in [0, 1], [B, H, W, 3] -> ``{"logits", "embedding",
"features"}``; BatchNorm takes ``axis_name`` for cross-replica statistics. The depthwise conv is
the detector's (native grouped conv or shifted slices, chosen per backend).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from aird_jax.models.common import batch_norm, check_images
from aird_jax.models.efficientnet import DepthwiseConv
from aird_jax.models.heads import output_heads
from aird_jax.models.registry import dtypes, register_model

Dtype = Any

# timm legacy_xception normalises with mean = std = 0.5 (Keras "tf" preprocessing).
XCEPTION_MEAN = (0.5, 0.5, 0.5)
XCEPTION_STD = (0.5, 0.5, 0.5)
XCEPTION_FEATURES = 2048
# FF++ used dropout 0.5 before its 2-way head, so that is used here too (not model.dropout).
XCEPTION_DROPOUT = 0.5
MIN_SIZE = 32

# kaiming_normal(mode="fan_out", nonlinearity="relu"), the init timm uses for Xception.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


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

        def bn(name: str) -> nn.BatchNorm:  # PyTorch defaults, as the ImageNet weights
            return batch_norm(
                name, self.axis_name, self.dtype, self.param_dtype, use_running_average=not train
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

    `width` / `middle_blocks` exist only for "xception_tiny"; the defaults are Xception.
    `first_stride` = 1 serves F3-Net's LFS stream (its input is already at half resolution).
    Calling with ``start``/``stop`` runs only the stages [start, stop) of ``num_stages()``: 0 is
    the stem (conv1..bn2), 1..N the blocks, N + 1 the exit convs and pooling. F3-Net interleaves
    two trunks this way; a stage's modules keep their names, so the ImageNet port fits either.
    """

    axis_name: str | None = None
    depthwise: str = "native"
    width: float = 1.0
    middle_blocks: int = 8
    first_stride: int = 2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def num_stages(self) -> int:
        return len(xception_blocks(self.width, self.middle_blocks)) + 2

    @nn.compact
    def __call__(
        self, x: jax.Array, train: bool = False, start: int = 0, stop: int | None = None
    ) -> jax.Array:
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        w = lambda c: _width(c, self.width)

        def bn(name: str) -> nn.BatchNorm:  # PyTorch defaults, as the ImageNet weights
            return batch_norm(
                name, self.axis_name, self.dtype, self.param_dtype, use_running_average=not train
            )

        conv = lambda ch, stride, name: nn.Conv(
            w(ch), (3, 3), strides=(stride, stride), padding="VALID", use_bias=False,
            kernel_init=_conv_init, name=name, **kw,
        )  # fmt: skip
        sep = lambda ch, name: SeparableConv(w(ch), self.depthwise, name=name, **kw)
        blocks = xception_blocks(self.width, self.middle_blocks)
        stop = self.num_stages() if stop is None else stop
        if start <= 0 < stop:
            x = nn.relu(bn("bn1")(conv(32, self.first_stride, "conv1")(x)))
            x = nn.relu(bn("bn2")(conv(64, 1, "conv2")(x)))
        for i, (cin, cout, reps, s, swr, gf) in enumerate(blocks, start=1):
            if start <= i < stop:
                x = XceptionBlock(
                    cin, cout, reps, s, swr, gf, self.axis_name, self.depthwise,
                    name=f"block{i}", **kw,
                )(x, train)  # fmt: skip
        if start <= len(blocks) + 1 < stop:
            x = nn.relu(bn("bn3")(sep(1536, "conv3")(x)))
            x = nn.relu(bn("bn4")(sep(XCEPTION_FEATURES, "conv4")(x)))
            # Pool in float32 whatever the compute dtype: a 2048-wide mean in bf16 loses digits.
            x = jnp.mean(x.astype(jnp.promote_types(x.dtype, jnp.float32)), axis=(1, 2))
        return x


class XceptionDetector(nn.Module):
    """The fields every detector on Xception trunks shares (Xception, SPSL, F3-Net): one home
    for their configuration; see :func:`normalise`, :func:`heads` and :func:`build_detector`."""

    embed_dim: int
    depthwise: str
    axis_name: str | None = None
    dropout: float = XCEPTION_DROPOUT
    width: float = 1.0
    middle_blocks: int = 8
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32


def normalise(x: jax.Array) -> jax.Array:
    """[0, 1] images -> Xception's ImageNet input range, in the images' dtype."""
    return (x - jnp.asarray(XCEPTION_MEAN, x.dtype)) / jnp.asarray(XCEPTION_STD, x.dtype)


def heads(m: XceptionDetector, feats: jax.Array, train: bool) -> dict[str, jax.Array]:
    """The project's heads on pooled trunk features (call inside ``m``'s compact method)."""
    return output_heads(
        feats, embed_dim=m.embed_dim, train=train, dropout=m.dropout,
        dtype=m.dtype, param_dtype=m.param_dtype,
    )  # fmt: skip


class XceptionNet(XceptionDetector):
    """The FaceForensics++ Xception baseline with the project's heads."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "Xception", MIN_SIZE)
        trunk = XceptionTrunk(
            self.axis_name, self.depthwise, self.width, self.middle_blocks,
            name="rgb_backbone", dtype=self.dtype, param_dtype=self.param_dtype,
        )  # fmt: skip
        return heads(self, trunk(normalise(x), train), train)


def build_detector(
    cls: type[XceptionDetector], model_cfg: Any, axis_name: str | None, **variant: Any
) -> Any:
    """``cls`` from the config's model block (``variant``: width / middle_blocks overrides)."""
    return cls(
        embed_dim=int(model_cfg.embed_dim),
        depthwise=model_cfg.depthwise,
        axis_name=axis_name,
        **variant,
        **dtypes(model_cfg),
    )


# ----------------------------------------------------------------------------------- builders


@register_model("xception")
def build_xception(model_cfg: Any, axis_name: str | None = None, **variant: Any) -> XceptionNet:
    """Xception with dropout 0.5 before its 2-way head (as FF++)."""
    return build_detector(XceptionNet, model_cfg, axis_name, **variant)


@register_model("xception_tiny")
def build_xception_tiny(model_cfg: Any, axis_name: str | None = None) -> XceptionNet:
    """Quarter-width Xception with one middle-flow block (0.6M trunk parameters instead of 20.8M):
    the same code path at a size that suits CPU smoke runs and tests, like efficientnet_tiny for
    the detector. Not the baseline; no pretrained weights fit it."""
    return build_xception(model_cfg, axis_name, width=0.25, middle_blocks=1)


def with_stem_kernel(trunk: Any, kernel: Any) -> dict:
    """A copy of an Xception trunk tree (one collection) whose first conv kernel is ``kernel``:
    for models that feed the ImageNet trunk more or other input channels (SPSL, F3-Net)."""
    out = dict(trunk)
    if "conv1" in out:  # the params collection (batch_stats has no conv1)
        out["conv1"] = {**out["conv1"], "kernel": kernel}
    return out
