"""Port timm EfficientNet ImageNet weights to an aird_jax weights file.

  # online (needs the optional extra: pip install 'aird_jax[download]')
  python scripts/port_weights.py --model efficientnet_b4 --source timm/efficientnet_b4.ra2_in1k
  # offline, from a local checkpoint (.safetensors needs no torch; .pth/.bin needs torch)
  python scripts/port_weights.py --model tf_efficientnet_b4 --checkpoint model.safetensors

Writes ``--out`` (flax msgpack of {"params", "batch_stats"}) and ``--out``.json (model, padding,
source, sha256 of the source file). Point ``model.pretrained`` at ``--out``.
The logic lives in ``aird_jax.models.port`` (``main``).
"""

from __future__ import annotations

import sys

from aird_jax.models.port import main

if __name__ == "__main__":
    sys.exit(0 if main() else 1)
