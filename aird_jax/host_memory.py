"""Host memory that XLA:CPU reuses from call to call instead of mapping it afresh (glibc only).

XLA:CPU allocates the temporaries of an executable on every call, as one block, with
``posix_memalign`` from the worker thread that starts the call (the B4 detector's train step at
batch 8, 224 px: 2.6 GB). glibc serves a block that large with a fresh ``mmap`` and returns it with
``munmap`` on ``free``, so every step page-faults and zeroes all of it again: measured 660k minor
faults and 1.2 s of kernel time per 1.9 s step on 2 cores (PyTorch's step: 100k faults, 0.2 s),
while the step's own work took less user time than PyTorch's (2.2 against 2.7 s).

Three ``mallopt`` settings make glibc keep freed memory and hand it out again: one arena for all
threads (a thread's own arena cannot hold a block over 64 MB and falls back to ``mmap`` whatever
the other settings say), no ``mmap`` for large blocks, and no trimming of the heap's top. Measured
(``scripts/bench_model.py``, results/bench/cpu_step.md): 0 faults per step, the train step
1.9 -> 1.4 s.

The price, measured: one arena for all threads slows XLA's (multi-threaded) compilation, the B4
train step's from 28.5-36 s to 37-43 s (the persistent compilation cache pays it once per program),
and the process keeps its peak heap until it exits: when a call's temporaries are requested before
the previous call's are freed, both blocks stay (B4 step, batch 8: resident 4.9 GB, then 7.2 GB
from about step 20, unchanged to step 70; without the setting 4.9 GB, at 1.9-3.5 s per step instead
of 1.4-1.9 s). So it is done only where JAX computes on the CPU: with an accelerator plugin
installed (CUDA, ROCm, TPU) temporaries live in device memory, and the setting would cost compile
time for nothing (``JAX_PLATFORMS=cpu`` there turns it back on).

The settings only govern threads that have not allocated yet, so :func:`keep_freed_memory` must
run before JAX starts its backend (before the first array or ``jit`` call); CLI runs do it first
thing in :func:`aird_jax.cli.run`. ``AIRD_KEEP_HOST_MEMORY=0`` turns it off, ``=1`` on even beside
an accelerator. Results are unchanged: only where blocks come from changes, not what is computed.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import os
import platform

KEEP_ENV = "AIRD_KEEP_HOST_MEMORY"

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


# Distributions that give JAX a non-CPU backend.
_ACCELERATOR_PLUGINS = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")


def _accelerator_plugin() -> str | None:
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith(_ACCELERATOR_PLUGINS):
            return name
    return None


def wanted() -> bool:
    """``AIRD_KEEP_HOST_MEMORY`` if set (``0``/``off`` or ``1``/``on``); else True when JAX will
    compute on the CPU (``JAX_PLATFORMS=cpu``, or no accelerator plugin installed)."""
    value = os.environ.get(KEEP_ENV, "").strip().lower()
    if value:
        return value not in ("0", "off", "false", "no")
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0] == "cpu"
    return _accelerator_plugin() is None


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks instead of unmapping them; True if the settings took.

    A no-op (False) off glibc (macOS, musl), or when turned off by ``AIRD_KEEP_HOST_MEMORY``.
    """
    if not wanted() or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # -1 as the trim threshold is SIZE_MAX inside glibc (the int is converted): never trim. An
    # int cannot express a threshold above 2 GiB, and the B4 step's block alone is 2.6 GB.
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    return all(mallopt(param, value) == 1 for param, value in settings)
