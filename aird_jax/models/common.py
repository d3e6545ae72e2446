"""Pieces every model family shares: BatchNorm presets and the input-image check.

BatchNorm hyper-parameters follow the framework the weights (or the published model) come from.
Flax momentum = 1 - PyTorch momentum:

* ``TORCH_BN``: PyTorch ``BatchNorm2d`` defaults (eps 1e-5, torch momentum 0.1) - timm's
  ``efficientnet_b*`` and ``legacy_xception``, and the heads and frequency stream trained here.
* ``TF_BN``: TensorFlow / Keras defaults (eps 1e-3, decay 0.99) - ``tf_efficientnet_b*`` and the
  original (Keras) Meso-4.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

Dtype = Any

# (epsilon, flax momentum)
TORCH_BN: tuple[float, float] = (1e-5, 0.9)
TF_BN: tuple[float, float] = (1e-3, 0.99)


def batch_norm(
    name: str,
    axis_name: str | None,
    dtype: Dtype,
    param_dtype: Dtype,
    preset: tuple[float, float] = TORCH_BN,
    use_running_average: bool | None = None,
) -> nn.BatchNorm:
    """A BatchNorm named ``name`` in the calling module (call it inside ``@nn.compact``).

    ``axis_name`` makes the batch statistics cross-replica (pmap/shard_map/vmap axis);
    ``use_running_average`` may be given here or when calling the module.
    """
    epsilon, momentum = preset
    return nn.BatchNorm(
        use_running_average=use_running_average,
        momentum=momentum,
        epsilon=epsilon,
        axis_name=axis_name,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def check_images(x: jax.Array, name: str, min_size: int = 1) -> None:
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
