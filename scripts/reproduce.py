"""Regenerate one of the paper's Tables I-VI: train the runs it needs, evaluate, write the table.

  python scripts/reproduce.py --table 3 [--seeds 0 1 2] [--results results/] [--smoke]

Writes ``<results>/tableN.md`` and ``tableN.csv`` (the paper's figure beside ours). The harness
lives in ``aird_jax/experiments/`` (reproduce.py: the driver and this CLI; runs.py, tables.py,
cost.py: what it trains, computes and measures); ``--help`` lists every flag.
"""

import sys

from aird_jax import host_memory
from aird_jax.experiments.reproduce import main

if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    sys.exit(main())
