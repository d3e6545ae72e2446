"""Face X-ray (Li et al., CVPR 2020), a baseline: predict the blending boundary, classify from it.

The paper's network is HRNet-W48 (~65M parameters; no ImageNet weights for it exist here) with
its four resolutions fused into a map at 1/4 of the input, supervised by the X-ray
``B = 4 M (1 - M)`` of blended faces (:mod:`aird_jax.data.blend`), and a classification head on
top; the loss is ``L = L_cls + 100 * L_xray`` (cross-entropy; pixel-wise binary cross-entropy).

Ours keeps that structure on a smaller backbone: the project's EfficientNet (``model.backbone``,
ImageNet weights from ``model.pretrained`` as for the detector's RGB stream; B4 by default, or the
offline Lite0), because it already has ported ImageNet weights and exposes its multi-scale maps
(``return_maps``), whereas our Xception trunk pools internally and HRNet would be a new 65M
network to port. An HRNet-like fusion head: the last maps at strides 8, 16 and 32 are projected
(1x1 conv) to 64 channels, upsampled to stride 8 (bilinear) and concatenated, then a 3x3
conv + BatchNorm + ReLU and a 1x1 conv give the X-ray logits, upsampled bilinearly to the input
size. The classifier and SupCon projection (``heads.py``) see the pooled backbone features,
the pooled fusion features and the mean and max of the predicted X-ray.

Output: ``{"logits", "embedding", "features", "xray_logits" [B, H, W]}`` (X-ray before the
sigmoid); the training step adds ``loss.xray_weight`` x the X-ray BCE when the batch carries
``"xray"`` targets, which ``data.fakes=sbi`` makes (real faces: an all-zero map).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aird_jax.models.common import batch_norm, check_images
from aird_jax.models.detector import IMAGENET_MEAN, IMAGENET_STD
from aird_jax.models.efficientnet import VARIANTS, EfficientNet
from aird_jax.models.heads import output_heads
from aird_jax.models.registry import check_choice, dtypes, register_model
from aird_jax.ops.conv import PADDINGS

Dtype = Any

HEAD_CHANNELS = 64
MIN_SIZE = 32  # the stride-32 map must be at least 1x1
XRAY_MODELS = ("face_xray", "face_xray_tiny")


def predicts_xray(model_name: str) -> bool:
    """Whether a registered model predicts an X-ray map (and so needs X-ray targets)."""
    return model_name in XRAY_MODELS


class FaceXRay(nn.Module):
    """Raw RGB ``[B, H, W, 3]`` in [0, 1] -> heads' outputs plus ``xray_logits`` [B, H, W]."""

    backbone: str
    padding: str
    drop_path_rate: float
    depthwise: str
    embed_dim: int
    dropout: float
    axis_name: str | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        check_images(x, "Face X-ray", MIN_SIZE)
        kw = {"dtype": self.dtype, "param_dtype": self.param_dtype}
        x = x.astype(jnp.float32)
        rgb = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
        pooled, maps = EfficientNet(
            self.backbone,
            self.padding,
            self.drop_path_rate,
            self.depthwise,
            axis_name=self.axis_name,
            return_maps=True,
            name="rgb_backbone",
            **kw,
        )(rgb, train)
        fine = maps[-3]  # stride 8
        b, h8, w8 = fine.shape[:3]
        parts = []
        for i, m in enumerate(maps[-3:]):
            p = nn.Conv(HEAD_CHANNELS, (1, 1), name=f"lateral{i}", **kw)(m)
            parts.append(jax.image.resize(p, (b, h8, w8, HEAD_CHANNELS), "bilinear"))
        f = nn.Conv(HEAD_CHANNELS, (3, 3), use_bias=False, name="fuse", **kw)(
            jnp.concatenate(parts, axis=-1)
        )
        f = nn.relu(batch_norm("fuse_bn", self.axis_name, self.dtype, self.param_dtype)(
            f, use_running_average=not train
        ))  # fmt: skip
        xr = nn.Conv(1, (1, 1), name="xray", **kw)(f).astype(jnp.float32)
        xr = jax.image.resize(xr, (b, x.shape[1], x.shape[2], 1), "bilinear")[..., 0]
        prob = jax.nn.sigmoid(xr)
        feats = jnp.concatenate(
            [
                pooled.astype(jnp.float32),
                f.astype(jnp.float32).mean(axis=(1, 2)),
                prob.mean(axis=(1, 2))[:, None],
                prob.max(axis=(1, 2))[:, None],
            ],
            axis=-1,
        )
        out = output_heads(feats, embed_dim=self.embed_dim, train=train, dropout=self.dropout, **kw)
        return {**out, "xray_logits": xr}


def validate_face_xray(model_cfg: Any) -> None:
    check_choice(model_cfg, "backbone", list(VARIANTS))
    check_choice(model_cfg, "padding", PADDINGS)
    for key in ("dropout", "drop_path_rate"):
        v = getattr(model_cfg, key)
        if not isinstance(v, int | float) or not 0.0 <= v < 1.0:
            raise ValueError(f"model.{key}={v!r} must be a number in [0, 1)")


@register_model("face_xray", validate=validate_face_xray)
def build_face_xray(model_cfg: Any, axis_name: str | None = None, **variant: Any) -> FaceXRay:
    """Face X-ray on ``model.backbone`` (ImageNet weights from ``model.pretrained``)."""
    fields = {
        "backbone": model_cfg.backbone,
        "padding": model_cfg.padding,
        "drop_path_rate": float(model_cfg.drop_path_rate),
        "depthwise": model_cfg.depthwise,
        "embed_dim": int(model_cfg.embed_dim),
        "dropout": float(model_cfg.dropout),
    }
    return FaceXRay(**{**fields, **variant}, axis_name=axis_name, **dtypes(model_cfg))


@register_model("face_xray_tiny", validate=validate_face_xray)
def build_face_xray_tiny(model_cfg: Any, axis_name: str | None = None) -> FaceXRay:
    """The same network on ``efficientnet_tiny`` (CPU tests and smoke runs; no weights fit)."""
    return build_face_xray(model_cfg, axis_name, backbone="efficientnet_tiny")
