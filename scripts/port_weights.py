"""Port timm EfficientNet ImageNet weights to an aird_jax weights file.

  # online (needs the optional extra: pip install 'aird_jax[download]')
  python scripts/port_weights.py --model efficientnet_b4 --source timm/efficientnet_b4.ra2_in1k
  # offline, from a local checkpoint (.safetensors needs no torch; .pth/.bin needs torch)
  python scripts/port_weights.py --model tf_efficientnet_b4 --checkpoint model.safetensors

Writes ``--out`` (flax msgpack of {"params", "batch_stats"}) and ``--out``.json (model, padding,
source, sha256 of the source file). Point ``model.pretrained`` at ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aird_jax.models.port import (
    load_state_dict,
    port_timm_efficientnet,
    resolve_model_name,
    save_variables,
    sha256_file,
)

DEFAULT_OUT_DIR = Path("data") / "weights"


def download(source: str) -> Path:
    """Fetch a timm checkpoint from the Hugging Face Hub (``timm/<name>.<tag>``)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:
        raise SystemExit(
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
    raise SystemExit(
        f"could not download {repo} from the Hugging Face Hub:\n  "
        + "\n  ".join(errors)
        + "\nOffline? Download the checkpoint elsewhere and pass --checkpoint FILE."
    )


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--model",
        required=True,
        help="timm name: efficientnet_b0..b7 (symmetric padding) or "
        "tf_efficientnet_b0..b7 (TF 'same' padding)",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--source", help="Hugging Face Hub id, e.g. timm/efficientnet_b4.ra2_in1k")
    src.add_argument("--checkpoint", help="local .safetensors / .pth / .bin state dict")
    ap.add_argument("--out", help=f"output file (default {DEFAULT_OUT_DIR}/<model>.msgpack)")
    args = ap.parse_args(argv)

    try:
        variant, padding = resolve_model_name(args.model)
    except ValueError as e:
        raise SystemExit(str(e)) from e
    if args.source and resolve_model_name(args.source)[1] != padding:
        raise SystemExit(f"--source {args.source} and --model {args.model} disagree on padding")
    ckpt = download(args.source) if args.source else Path(args.checkpoint)
    if not ckpt.is_file():
        raise SystemExit(f"checkpoint {ckpt} does not exist")
    try:
        variables = port_timm_efficientnet(load_state_dict(ckpt), args.model)
    except ValueError as e:
        raise SystemExit(f"{ckpt}: {e}") from e
    out = Path(args.out) if args.out else DEFAULT_OUT_DIR / f"{args.model}.msgpack"
    meta = {
        "model": args.model,
        "variant": variant,
        "padding": padding,
        "source": args.source or str(ckpt.resolve()),
        "source_file": ckpt.name,
        "sha256": sha256_file(ckpt),
    }
    save_variables(variables, out, meta)
    print(
        f"wrote {out} (+ {out.name}.json): {args.model} padding={padding} sha256={meta['sha256']}"
    )
    print(
        f"use it with --config.model.backbone={variant} --config.model.padding={padding} "
        f"--config.model.pretrained={out}"
    )
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
