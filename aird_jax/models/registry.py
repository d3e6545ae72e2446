"""The model registry: names -> builders (+ validators), and what every model family shares.

A model module registers its builder ``fn(model_cfg, axis_name) -> nn.Module`` and, optionally,
a validator ``fn(model_cfg)`` that raises ValueError::

    @register_model("mesonet", validate=validate_mesonet)
    def build_mesonet(model_cfg, axis_name): ...

``validate_model_config`` (called once, by ``aird_jax.config.validate_config``) checks the fields
every model reads, then dispatches to the validator registered for ``model_cfg.name``.
``build_model`` only builds: it reads the config's values and checks nothing again. The config
file (``configs/late_supcon.py``) is the only home of default values.

Parameters under a top-level ``rgb_backbone`` module are the pretrained backbone (0.1x LR).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from aird_jax.ops.conv import DEPTHWISE_IMPLS

Builder = Callable[[Any, "str | None"], nn.Module]
Validator = Callable[[Any], None]
# (ported ImageNet backbone tree, the model's backbone tree of shapes) -> a tree fitting the model
Adapter = Callable[[Any, Any], Any]

MODELS: dict[str, Builder] = {}
VALIDATORS: dict[str, Validator] = {}
PRETRAINED_ADAPTERS: dict[str, Adapter] = {}
BACKBONE = "rgb_backbone"
DTYPES = ("float32", "bfloat16", "float16", "float64")


def register_model(
    name: str, validate: Validator | None = None, adapt_pretrained: Adapter | None = None
) -> Callable[[Builder], Builder]:
    """Decorator: register the builder under ``name`` (and its validator, if any).

    ``adapt_pretrained(src, dst)`` (optional) maps one collection of a ported ImageNet backbone
    onto the model's ``rgb_backbone`` tree when they differ (e.g. more input channels, or two
    streams that both start from ImageNet); ``load_pretrained`` applies it before its strict check.
    """

    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
        if validate is not None:
            VALIDATORS[name] = validate
        if adapt_pretrained is not None:
            PRETRAINED_ADAPTERS[name] = adapt_pretrained
        return fn

    return deco


def registered_models() -> list[str]:
    return sorted(MODELS)


# ------------------------------------------------------------------------------- validation
def check_choice(model_cfg: Any, key: str, choices: Sequence[Any]) -> None:
    value = getattr(model_cfg, key)
    if value not in choices:
        raise ValueError(f"model.{key}={value!r} is not valid; choose one of {list(choices)}")


def is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def validate_model_config(model_cfg: Any) -> None:
    """Raise ValueError naming the valid choices for any bad field (call before compiling)."""
    check_choice(model_cfg, "name", registered_models())
    check_choice(model_cfg, "dtype", DTYPES)
    check_choice(model_cfg, "param_dtype", DTYPES)
    check_choice(model_cfg, "depthwise", DEPTHWISE_IMPLS)
    pretrained = model_cfg.pretrained
    if not isinstance(pretrained, str | Path):
        raise ValueError(f"model.pretrained={pretrained!r} must be a path string ('' = none)")
    emb = model_cfg.embed_dim
    if not is_int(emb) or emb < 1:
        raise ValueError(f"model.embed_dim={emb!r} must be a positive integer (paper: 128)")
    validator = VALIDATORS.get(model_cfg.name)
    if validator is not None:
        validator(model_cfg)


# --------------------------------------------------------------------------------- building
def build_model(model_cfg: Any, axis_name: str | None = None) -> nn.Module:
    """The module named by ``model_cfg.name`` (a validated config); ``axis_name`` goes to every
    BatchNorm."""
    return MODELS[model_cfg.name](model_cfg, axis_name)


def dtypes(model_cfg: Any) -> dict[str, Any]:
    """``{"dtype", "param_dtype"}`` keyword arguments of a module, from the config's names."""
    return {k: jnp.dtype(getattr(model_cfg, k)) for k in ("dtype", "param_dtype")}


# -------------------------------------------------------------------------- parameter trees
def path_names(path: Sequence[Any]) -> list[str]:
    """Plain names of a parameter path (a tuple of names or a jax tree path)."""
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(str(getattr(k, attr)))
                break
        else:
            out.append(str(k))
    return out


def is_backbone_path(path: Sequence[Any]) -> bool:
    """True for parameters of the pretrained RGB backbone (they get the 0.1x learning rate).

    Accepts a tuple of names or a jax tree path, with or without a leading collection name.
    """
    names = path_names(path)
    if names and names[0] in ("params", "batch_stats"):
        names = names[1:]
    return bool(names) and names[0] == BACKBONE


def count_params(tree: Any) -> int:
    """Number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
    return int(sum(math.prod(p.shape) for p in jax.tree.leaves(tree)))
