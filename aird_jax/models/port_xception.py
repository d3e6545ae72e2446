"""ImageNet Xception weights from PyTorch checkpoints into the Flax `XceptionTrunk`.

    python -m aird_jax.models.port_xception --source timm/legacy_xception.tf_in1k   # online
    python -m aird_jax.models.port_xception --checkpoint model.safetensors         # offline
    then train with --config.model.name=xception --config.model.pretrained=<out>

A fault (missing or unreadable checkpoint, `.pth` without torch, offline download) ends in one
`error: ...` line with exit status 2 (`--verbose` or AIRD_VERBOSE=1 adds the traceback).

Sources: timm's `legacy_xception` (Cadene's port of the Keras ImageNet weights, hub id
`timm/legacy_xception.tf_in1k`) as `.safetensors` or `.pth`, and checkpoints with the same layer
names under a prefix (`module.`, `model.`) or with 2-D pointwise kernels (Cadene's original
file, which FaceForensics++ loaded). The port is strict, like efficientnet-jax's: every source
key is used or explicitly ignored (the classifier, `num_batches_tracked`), every target leaf is
filled, every shape is asserted, and all problems are listed in one error.

Key mapping (timm -> Flax): `block3.rep.4.pointwise.weight` -> params `block3/rep_4/pointwise/
kernel`; conv weights OIHW -> HWIO (depthwise [C,1,k,k] -> [k,k,1,C]); BatchNorm weight/bias ->
scale/bias, running_mean/var -> batch_stats mean/var.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from aird_jax.cli import UserError
from aird_jax.cli import run as run_cli
from aird_jax.models import port as _port
from aird_jax.models.baselines.xception import XceptionTrunk

DEFAULT_SOURCE = "timm/legacy_xception.tf_in1k"
DEFAULT_OUT = Path("data") / "weights" / "legacy_xception.msgpack"
# Keys that are not part of the trunk: ImageNet classifiers under their various names.
_IGNORED_PREFIXES = ("fc.", "last_linear.", "classifier.", "head.")
_STRIP_PREFIXES = ("module.", "model.", "backbone.")


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Flat {name: array} from .safetensors (no torch needed) or .pth/.bin (needs torch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Xception checkpoint {path} does not exist. Pass a local .safetensors/.pth file of "
            f"timm's legacy_xception, or download one with `python -m "
            f"aird_jax.models.port_xception --source {DEFAULT_SOURCE}` (download_xception())."
        )
    return _port.load_state_dict(path)


def download_xception(source: str = DEFAULT_SOURCE, cache_dir: str | None = None) -> Path:
    """Fetch the timm checkpoint from the Hugging Face Hub (optional `download` extra)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise UserError(
            "Downloading needs huggingface_hub (pip install 'aird_jax[download]'); or pass a local "
            "checkpoint file instead."
        ) from e
    return Path(hf_hub_download(source, "model.safetensors", cache_dir=cache_dir))


def trunk_template() -> dict[str, Any]:
    """ShapeDtypeStructs of XceptionTrunk's variables, without initialising 20M parameters."""
    return jax.eval_shape(
        lambda: XceptionTrunk(depthwise="native").init(
            jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32)
        )
    )


def _target(key: str, ndim: int) -> tuple[str, tuple[str, ...]] | None:
    """timm key -> (collection, Flax path); None for keys we ignore on purpose."""
    parts = key.split(".")
    leaf = parts[-1]
    if leaf == "num_batches_tracked":
        return None
    mods: list[str] = []
    i = 0
    while i < len(parts) - 1:
        if parts[i] == "rep" and i + 1 < len(parts) - 1 and parts[i + 1].isdigit():
            mods.append(f"rep_{parts[i + 1]}")
            i += 2
        else:
            mods.append(parts[i])
            i += 1
    if leaf == "weight":
        return "params", (*mods, "kernel" if ndim in (2, 4) else "scale")
    if leaf == "bias":
        return "params", (*mods, "bias")
    if leaf == "running_mean":
        return "batch_stats", (*mods, "mean")
    if leaf == "running_var":
        return "batch_stats", (*mods, "var")
    return "params", (*mods, leaf)  # unknown leaf: will be reported as unexpected


def port_timm_xception(
    state_dict: Mapping[str, Any], dtype: Any = None
) -> dict[str, dict[str, Any]]:
    """Strictly map a timm legacy_xception state dict to {"params", "batch_stats"} of the trunk.

    `dtype=None` keeps the checkpoint's dtype (float64 stays float64 for the parity test).

    Raises ValueError listing every missing, unexpected and mis-shaped key."""
    template = {
        col: {p: tuple(s.shape) for p, s in traverse_util.flatten_dict(tree).items()}
        for col, tree in trunk_template().items()
    }
    out: dict[str, dict[tuple[str, ...], np.ndarray]] = {col: {} for col in template}
    unexpected, bad_shape, ignored = [], [], []
    seen_bad: set[tuple[str, tuple[str, ...]]] = set()
    for raw_key, value in state_dict.items():
        key = raw_key
        for prefix in _STRIP_PREFIXES:
            key = key.removeprefix(prefix)
        if key.startswith(_IGNORED_PREFIXES):
            ignored.append(raw_key)
            continue
        arr = np.asarray(value)
        tgt = _target(key, arr.ndim)
        if tgt is None:
            ignored.append(raw_key)
            continue
        col, path = tgt
        if col not in template or path not in template[col]:
            unexpected.append(raw_key)
            continue
        want = template[col][path]
        if path[-1] == "kernel":
            if arr.ndim == 2 and len(want) == 4 and want[:2] == (1, 1):
                arr = arr[:, :, None, None]  # old Cadene/FF++ files store 1x1 kernels as [O, I]
            if arr.ndim == 4:
                arr = arr.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        if arr.shape != want:
            seen_bad.add((col, path))
            bad_shape.append(f"{raw_key}: {tuple(np.shape(value))} -> {arr.shape}, want {want}")
            continue
        if path in out[col]:
            unexpected.append(f"{raw_key} (duplicate of an earlier key)")
            continue
        out[col][path] = np.asarray(arr, dtype=dtype)
    missing = [
        f"{col}/{'/'.join(p)}"
        for col, flat in template.items()
        for p in flat
        if p not in out[col] and (col, p) not in seen_bad
    ]
    if missing or unexpected or bad_shape:
        lines = ["Xception checkpoint does not match aird_jax's XceptionTrunk:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", bad_shape),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]))
                if len(items) > 20:
                    lines.append(f"    ... and {len(items) - 20} more")
        lines.append(f"Expected a timm legacy_xception checkpoint (e.g. {DEFAULT_SOURCE}).")
        raise ValueError("\n".join(lines))
    return {col: traverse_util.unflatten_dict(flat) for col, flat in out.items()}


def port_xception_checkpoint(
    checkpoint: str | os.PathLike, out: str | os.PathLike, source: str | None = None
) -> Path:
    """Port a checkpoint file and write it in the project's weights format (the one
    `aird_jax.models.load_pretrained` reads for `model.pretrained`), with a JSON sidecar naming
    the source and its sha256."""
    checkpoint, out = Path(checkpoint), Path(out)
    variables = port_timm_xception(load_state_dict(checkpoint))
    meta = {
        "model": "legacy_xception",
        "source": source or str(checkpoint.resolve()),
        "source_file": checkpoint.name,
        "sha256": _port.sha256_file(checkpoint),
    }
    _port.save_variables(variables, out, meta)
    return out


def main(argv: list[str] | None = None) -> Path:
    """Port and write; a user's mistake raises ``UserError`` (``cli_main`` prints it as one
    ``error: ...`` line)."""
    ap = argparse.ArgumentParser(
        prog="python -m aird_jax.models.port_xception",
        description="Port timm legacy_xception ImageNet weights for model.name=xception.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help=f"Hugging Face Hub id (e.g. {DEFAULT_SOURCE})")
    src.add_argument("--checkpoint", help="local .safetensors / .pth state dict")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"output file (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    try:
        ckpt = download_xception(args.source) if args.source else Path(args.checkpoint)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - offline, unknown repo, ...: one clear message
        raise UserError(
            f"could not download {args.source}: {type(e).__name__}: {e}\nOffline? Fetch "
            "model.safetensors elsewhere and pass --checkpoint FILE."
        ) from e
    try:
        out = port_xception_checkpoint(ckpt, args.out, args.source)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(str(e)) from e
    print(f"wrote {out} (+ {_port.sidecar_path(out).name})")
    print(f"use it with --config.model.name=xception --config.model.pretrained={out}")
    return out


def cli_main(argv: list[str] | None = None) -> int:
    """``main`` as a terminal command: 0, or one ``error: ...`` line and 2 on a user's mistake."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = [a for a in argv if a != "--verbose"]

    def body() -> int:
        main(args)
        return 0

    return run_cli(body, argv)


if __name__ == "__main__":
    sys.exit(cli_main())
