"""Evaluate a run's checkpoint on a dataset split: a thin CLI over ``aird_jax.evaluate_cli``.

  python scripts/evaluate.py --workdir runs/X --dataset celeb_df_v2 --split test|all \
      [--checkpoint best|latest|STEP] [--config c23] [--methods Deepfakes,FaceSwap] \
      [--degradation jpeg50] [--frames all|N]

See ``python scripts/evaluate.py --help``.
"""

import sys

from aird_jax import host_memory
from aird_jax.evaluate_cli import main

if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
