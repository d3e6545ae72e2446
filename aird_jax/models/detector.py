"""The dual-stream detector (paper Sec. III, Fig. 1) and the Table III fusion variants.

``fusion``:
* ``late`` (the paper's model): EfficientNet features [F] ; frequency features [256] -> fusion MLP.
* ``early``: the high-pass DCT map is a 4th input channel of the EfficientNet stem, so the signals
  mix from the first layer (``load_pretrained`` zero-extends the ImageNet stem kernel).
* ``rgb_only`` / ``freq_only``: one stream -> the same fusion MLP and heads.

Then the shared heads (``heads.py``): fusion MLP, classifier and SupCon projection head.
Registered as model ``detector``; its builder reads every value from ``config.model``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aird_jax.models.efficientnet import VARIANTS, EfficientNet
from aird_jax.models.frequency import FrequencyStream, highpass_map
from aird_jax.models.heads import FusionMLP, output_heads
from aird_jax.models.registry import check_choice, dtypes, is_int, register_model
from aird_jax.ops.conv import PADDINGS

Dtype = Any

FUSIONS = ("late", "early", "rgb_only", "freq_only")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DCT_BLOCK = 8


class Detector(nn.Module):
    """Raw RGB ``[B, H, W, 3]`` in [0, 1] -> ``{"logits", "embedding", "features"}``.

    The fields that mirror ``config.model`` have no defaults here: ``build_detector`` passes them.
    """

    backbone: str
    padding: str
    fusion: str
    dct_cutoff: int
    dropout: float
    freq_dropout: float
    embed_dim: int
    drop_path_rate: float
    depthwise: str
    axis_name: str | None = None
    fused_dim: int = 512
    freq_dim: int = 256
    num_classes: int = 2
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def check_input(self, x: jax.Array) -> None:
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(
                f"Detector expects raw RGB images [batch, height, width, 3] in [0, 1]; got "
                f"shape {tuple(x.shape)}."
            )
        if self.fusion != "rgb_only" and (x.shape[1] % DCT_BLOCK or x.shape[2] % DCT_BLOCK):
            raise ValueError(
                f"the 8x8 block DCT needs height and width divisible by 8; got "
                f"{x.shape[1]}x{x.shape[2]}. Set data.image_size to a multiple of 8 (e.g. 224)."
            )

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
        self.check_input(x)
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
                self.freq_dropout,
                out_dim=self.freq_dim,
                axis_name=self.axis_name,
                name="freq_stream",
                **kw,
            )(inp, train)

        streams = {
            "late": lambda: jnp.concatenate([backbone(rgb), freq_stream(freq)], axis=-1),
            "early": lambda: backbone(jnp.concatenate([rgb, freq], axis=-1)),
            "rgb_only": lambda: backbone(rgb),
            "freq_only": lambda: freq_stream(freq),
        }
        feats = streams[self.fusion]()
        fused = FusionMLP(self.dropout, self.fused_dim, self.axis_name, name="fusion", **kw)(
            feats, train
        )
        return output_heads(
            fused, embed_dim=self.embed_dim, train=train, num_classes=self.num_classes, **kw
        )


def validate_detector(model_cfg: Any) -> None:
    """The detector's rules (``validate_model_config`` has checked the shared fields)."""
    check_choice(model_cfg, "backbone", list(VARIANTS))
    check_choice(model_cfg, "padding", PADDINGS)
    check_choice(model_cfg, "fusion", FUSIONS)
    cutoff = model_cfg.dct_cutoff
    if not is_int(cutoff) or not 0 <= cutoff <= DCT_BLOCK:
        raise ValueError(f"model.dct_cutoff={cutoff!r} must be an integer in 0..8 (paper: 4)")
    for key in ("dropout", "freq_dropout", "drop_path_rate"):
        v = getattr(model_cfg, key)
        if not isinstance(v, int | float) or not 0.0 <= v < 1.0:
            raise ValueError(f"model.{key}={v!r} must be a number in [0, 1)")


@register_model("detector", validate=validate_detector)
def build_detector(model_cfg: Any, axis_name: str | None = None) -> Detector:
    return Detector(
        backbone=model_cfg.backbone,
        padding=model_cfg.padding,
        fusion=model_cfg.fusion,
        dct_cutoff=int(model_cfg.dct_cutoff),
        dropout=float(model_cfg.dropout),
        freq_dropout=float(model_cfg.freq_dropout),
        embed_dim=int(model_cfg.embed_dim),
        drop_path_rate=float(model_cfg.drop_path_rate),
        depthwise=model_cfg.depthwise,
        axis_name=axis_name,
        **dtypes(model_cfg),
    )
