"""Leave-one-method-out (LOMO) on a face folder: train on three FF++ methods, test on the fourth.

  python scripts/leave_one_method_out.py --faces ../shared/data/ffpp_faces299 \
      --holdout NeuralTextures [--variants late_supcon,rgb_only,freq_only] [--seeds 0] \
      [--image-size 64] [--epochs 6] [--results results/lomo]

Writes ``<results>/<holdout>.md`` and ``.csv``. The study lives in
``aird_jax/experiments/lomo.py``; ``--help`` lists every flag.
"""

import sys

from aird_jax import host_memory
from aird_jax.experiments.lomo import main

if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
