"""keep_freed_memory: large frees stay in the heap (glibc's own counters say so), and CLIs apply it.

Each check runs in a child process: mallopt settings are process-wide and permanent.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys

import pytest

from aird_jax import cli

# The child allocates and frees 64 MB blocks with libc's malloc, then reads glibc's own count of
# mmapped blocks (mallinfo2().hblks) while one is live: the reference is glibc's bookkeeping.
CHILD = r"""
import ctypes, ctypes.util, json, sys
from aird_jax.host_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory()
before = libc.mallinfo2().hblks
p = libc.malloc(64 << 20)
during = libc.mallinfo2().hblks
libc.free(p)
print(json.dumps({"applied": applied, "mmapped_blocks_added": during - before}))
"""


def _glibc_with_mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return hasattr(ctypes.CDLL(name), "mallinfo2")
    except OSError:
        return False


needs_glibc = pytest.mark.skipif(
    not _glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2); elsewhere a no-op"
)


def _child(tuning: str | None) -> dict:
    env = dict(os.environ)
    env.pop("AIRD_MALLOC_TUNING", None)
    if tuning is not None:
        env["AIRD_MALLOC_TUNING"] = tuning
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_large_blocks_come_from_the_heap_once_applied_and_from_mmap_when_off():
    on = _child(None)
    off = _child("off")
    assert on == {"applied": True, "mmapped_blocks_added": 0}
    # glibc's default: a 64 MB block is above the mmap threshold, so it is its own mapping.
    assert off["applied"] is False and off["mmapped_blocks_added"] >= 1


def test_cli_run_applies_it(monkeypatch):
    calls = []
    monkeypatch.setattr("aird_jax.host_memory.keep_freed_memory", lambda: calls.append(1))
    monkeypatch.setenv(cli.COMPILE_CACHE_ENV, "off")
    assert cli.run(lambda: 0, argv=[]) == 0
    assert calls == [1]
