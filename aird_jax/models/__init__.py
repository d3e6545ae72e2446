"""Model registry: ``build_model``, ``load_pretrained``, ``validate_model_config``.

Other model families register a builder ``fn(model_cfg, axis_name) -> nn.Module`` (optionally a
validator ``fn(model_cfg)`` that raises ValueError) with :func:`register_model`, e.g. in
``baselines.py``::

    @register_model("mesonet")
    def build_mesonet(model_cfg, axis_name=None): ...

Parameters under a top-level ``rgb_backbone`` module are the pretrained backbone (0.1x LR).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aird_jax.models.detector import FUSIONS, Detector
from aird_jax.models.efficientnet import DEPTHWISE_IMPLS, PADDINGS, VARIANTS, count_params

Builder = Callable[[Any, "str | None"], nn.Module]
Validator = Callable[[Any], None]

MODELS: dict[str, Builder] = {}
VALIDATORS: dict[str, Validator] = {}
BACKBONE = "rgb_backbone"
DTYPES = ("float32", "bfloat16", "float16", "float64")


def register_model(
    name: str, builder: Builder | None = None, validate: Validator | None = None
) -> Any:
    """Register ``builder`` under ``name`` (usable as a decorator when ``builder`` is None)."""

    def deco(fn: Builder) -> Builder:
        MODELS[name] = fn
        if validate is not None:
            VALIDATORS[name] = validate
        return fn

    return deco(builder) if builder is not None else deco


def registered_models() -> list[str]:
    return sorted(MODELS)


def _choice(cfg: Any, key: str, choices: Sequence[Any], default: Any = None) -> None:
    value = cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)
    if value not in choices:
        raise ValueError(f"model.{key}={value!r} is not valid; choose one of {list(choices)}")


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def _validate_detector(cfg: Any) -> None:
    _choice(cfg, "backbone", list(VARIANTS), "efficientnet_b4")
    _choice(cfg, "padding", PADDINGS, "symmetric")
    _choice(cfg, "fusion", FUSIONS, "late")
    cutoff = _get(cfg, "dct_cutoff", 4)
    if not isinstance(cutoff, int | np.integer) or isinstance(cutoff, bool) or not 0 <= cutoff <= 8:
        raise ValueError(f"model.dct_cutoff={cutoff!r} must be an integer in 0..8 (paper: 4)")
    for key, default in (("dropout", 0.3), ("freq_dropout", 0.3), ("drop_path_rate", 0.2)):
        v = _get(cfg, key, default)
        if not isinstance(v, int | float) or not 0.0 <= v < 1.0:
            raise ValueError(f"model.{key}={v!r} must be a number in [0, 1)")
    emb = _get(cfg, "embed_dim", 128)
    if not isinstance(emb, int | np.integer) or emb < 1:
        raise ValueError(f"model.embed_dim={emb!r} must be a positive integer (paper: 128)")


def validate_model_config(model_cfg: Any) -> None:
    """Raise ValueError naming the valid choices for any bad field (call before compiling)."""
    _choice(model_cfg, "name", registered_models(), "detector")
    _choice(model_cfg, "dtype", DTYPES, "float32")
    _choice(model_cfg, "param_dtype", DTYPES, "float32")
    _choice(model_cfg, "depthwise", DEPTHWISE_IMPLS, "auto")
    pretrained = _get(model_cfg, "pretrained", "")
    if not isinstance(pretrained, str | Path):
        raise ValueError(f"model.pretrained={pretrained!r} must be a path string ('' = none)")
    validator = VALIDATORS.get(_get(model_cfg, "name", "detector"))
    if validator is not None:
        validator(model_cfg)


def build_model(model_cfg: Any, axis_name: str | None = None) -> nn.Module:
    """The module named by ``model_cfg.name``; ``axis_name`` goes to every BatchNorm."""
    validate_model_config(model_cfg)
    return MODELS[_get(model_cfg, "name", "detector")](model_cfg, axis_name)


@register_model("detector", validate=_validate_detector)
def build_detector(model_cfg: Any, axis_name: str | None = None) -> Detector:
    g = lambda k, d: _get(model_cfg, k, d)  # noqa: E731
    return Detector(
        backbone=g("backbone", "efficientnet_b4"),
        padding=g("padding", "symmetric"),
        fusion=g("fusion", "late"),
        dct_cutoff=int(g("dct_cutoff", 4)),
        dropout=float(g("dropout", 0.3)),
        freq_dropout=float(g("freq_dropout", 0.3)),
        embed_dim=int(g("embed_dim", 128)),
        drop_path_rate=float(g("drop_path_rate", 0.2)),
        depthwise=g("depthwise", "auto"),
        axis_name=axis_name,
        dtype=jnp.dtype(g("dtype", "float32")),
        param_dtype=jnp.dtype(g("param_dtype", "float32")),
    )


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


def port_command(model_cfg: Any) -> str:
    """How to create the weights file ``model_cfg.pretrained`` (for error messages)."""
    out = _get(model_cfg, "pretrained", "")
    name = _get(model_cfg, "name", "detector")
    if name != "detector":
        return f"the weight-port script of model '{name}' with --out {out}"
    backbone = _get(model_cfg, "backbone", "efficientnet_b4")
    tf = "tf_" if _get(model_cfg, "padding", "symmetric") == "same" else ""
    tag = "ns_jft_in1k" if tf else "ra2_in1k"
    return (
        f"python scripts/port_weights.py --model {tf}{backbone} --source timm/{tf}{backbone}.{tag} "
        f"--out {out}   (offline: --checkpoint model.safetensors)"
    )


def load_pretrained(variables: Any, model_cfg: Any) -> Any:
    """Copy the ported ImageNet backbone into ``variables["params"/"batch_stats"]["rgb_backbone"]``.

    No-op when ``model_cfg.pretrained == ""``. Every leaf must match in name and shape; for
    ``fusion="early"`` the 3-channel stem kernel is extended with a zero 4th (DCT) channel, so the
    network starts out computing exactly the ImageNet features.
    """
    from aird_jax.models.port import load_variables

    path = _get(model_cfg, "pretrained", "")
    if not path:
        return variables
    if BACKBONE not in variables.get("params", {}):
        logging.warning("model.pretrained=%s ignored: this model has no %s", path, BACKBONE)
        return variables
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} not found. Create them with:\n  {port_command(model_cfg)}"
        )
    src, meta = load_variables(path)
    backbone = _get(model_cfg, "backbone", "efficientnet_b4")
    padding = _get(model_cfg, "padding", "symmetric")
    for key, field, want in (("variant", "backbone", backbone), ("padding", "padding", padding)):
        if key in meta and meta[key] != want:
            raise ValueError(
                f"{path} holds {key}={meta[key]!r} but model.{field}={want!r}; port the "
                f"matching checkpoint ({port_command(model_cfg)})"
            )
    out = {c: dict(v) for c, v in variables.items()}
    for coll in ("params", "batch_stats"):
        dst = traverse_util.flatten_dict(dict(variables[coll][BACKBONE]))
        new = traverse_util.flatten_dict(dict(src.get(coll, {})))
        missing = sorted("/".join(k) for k in set(dst) - set(new))
        extra = sorted("/".join(k) for k in set(new) - set(dst))
        if missing or extra:
            raise ValueError(
                f"{path} does not fit model.backbone={backbone}: missing {missing[:10]}, "
                f"unexpected {extra[:10]}"
            )
        merged = {}
        for k, d in dst.items():
            a = np.asarray(new[k])
            if k == ("conv_stem", "kernel") and a.shape[2] + 1 == d.shape[2]:
                # early fusion: zero-initialised weights for the extra DCT input channel
                pad = np.zeros(a.shape[:2] + (1,) + a.shape[3:], a.dtype)
                a = np.concatenate([a, pad], axis=2)
            if a.shape != d.shape:
                raise ValueError(
                    f"{path}: {coll}/{'/'.join(k)} has shape {a.shape}, model needs {d.shape}"
                )
            merged[k] = jnp.asarray(a, dtype=d.dtype)
        out[coll][BACKBONE] = traverse_util.unflatten_dict(merged)
    return out


# Baseline models register themselves on import (owned by the baselines engineer).
try:  # noqa: SIM105 - keep the registry usable if the optional module is broken mid-edit
    from aird_jax.models import baselines as _baselines

    for _name, _fn in getattr(_baselines, "BASELINES", {}).items():
        MODELS.setdefault(_name, _fn)
except ImportError:  # pragma: no cover
    pass

__all__ = [
    "MODELS",
    "count_params",
    "build_model",
    "is_backbone_path",
    "load_pretrained",
    "register_model",
    "registered_models",
    "validate_model_config",
]
