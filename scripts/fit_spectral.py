"""Fit a spectral baseline into a run folder: a thin CLI over ``aird_jax.spectral_fit``.

  python scripts/fit_spectral.py --config configs/spectral.py:frank_dct,faces299 \
      --workdir runs/frank_dct_faces299 [--config.fit.C=1e-5]

Same flags as ``python -m aird_jax.spectral_fit`` (and ``python -m aird_jax.main``).
"""

from aird_jax import host_memory
from aird_jax.spectral_fit import cli_main

if __name__ == "__main__":
    host_memory.relaunch_under_allocator()  # under tcmalloc where chosen (host_memory.py)
    cli_main()
