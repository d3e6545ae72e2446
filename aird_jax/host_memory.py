"""Keep freed host memory in the process, so XLA:CPU's large temporaries are not re-faulted.

XLA:CPU allocates each large intermediate (an activation of a B4 stage is 10-60 MB) with
``malloc``. glibc serves blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and returns them to
the kernel on ``free``; the next step then page-faults and zeroes every page again. On these
2-core machines that fault traffic cost more than the arithmetic it surrounds: an element-wise
SiLU pair on an 8x112x112x144 activation took 41 ms with the defaults and 9 ms once freed
memory stays in the heap (``scripts/bench_model.py`` records which was in force).

:func:`keep_freed_memory` sets the three glibc knobs that keep it (``mallopt``): no mmap for
large blocks, no trimming of the heap top, a 256 MB top pad. Results are unchanged (only where
memory comes from); resident memory stays near its peak instead of shrinking between steps.
``AIRD_MALLOC_TUNING=0`` (or ``off``) leaves glibc's defaults. Not glibc (macOS, musl): no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MALLOC_TUNING_ENV = "AIRD_MALLOC_TUNING"
# glibc <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_TOP_PAD_BYTES = 256 << 20
_NEVER_TRIM = 2**31 - 1  # an int: mallopt takes one


def malloc_tuning_wanted() -> bool:
    """False when ``AIRD_MALLOC_TUNING`` is ``0``/``off``/``false``/``no``."""
    value = os.environ.get(MALLOC_TUNING_ENV, "").strip().lower()
    return value not in ("0", "off", "false", "no")


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Tell glibc to keep freed memory for reuse; True when applied (False: off or not glibc)."""
    if not malloc_tuning_wanted():
        return False
    libc = _glibc()
    if libc is None:
        return False
    ok = True
    for param, value in (
        (_M_MMAP_MAX, 0),
        (_M_TRIM_THRESHOLD, _NEVER_TRIM),
        (_M_TOP_PAD, _TOP_PAD_BYTES),
    ):
        ok = bool(libc.mallopt(ctypes.c_int(param), ctypes.c_int(value))) and ok
    return ok
