"""aird_jax.host_memory: XLA:CPU's per-call temporaries come from reused memory, not fresh pages.

The reference is the kernel's own count of minor page faults (``getrusage``): a block mapped afresh
faults once per 4 KiB page it touches, a reused one not at all. Each case runs in a new process,
because the setting must precede the JAX backend's start.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="host_memory tunes glibc's malloc; this platform has none",
)

# A jitted program whose temporary (the first product) and result are 128 MB each: blocks far
# above glibc's largest mmap threshold (32 MiB), as the B4 train step's 2.6 GB one is.
_PROBE = """
import json, resource, sys
from aird_jax import host_memory
took = host_memory.keep_freed_memory()
import jax, jax.numpy as jnp
rows = 1 << 22
x = jnp.ones((rows, 8), jnp.float32)
w = jnp.full((8, 8), 0.1, jnp.float32)
f = jax.jit(lambda x, w: jnp.tanh(x @ w) @ w)
for _ in range(3):  # warm-up: compile, first allocations
    f(x, w).block_until_ready()
faults = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x, w).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# The fewest: the heap still grows now and then, by a block, when a call's block is requested
# before the last one's is freed (then both are kept); without the setting every call faults.
faults = min(faults)
print(json.dumps({"took": took, "faults_per_call": faults, "pages": 2 * rows * 8 * 4 // 4096}))
"""


def _probe(keep: str) -> dict:
    env = {**os.environ, "AIRD_KEEP_HOST_MEMORY": keep, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_xla_temporaries_reuse_memory_instead_of_faulting_fresh_pages():
    off = _probe("0")
    assert off["took"] is False  # the switch turns it off
    if off["faults_per_call"] < off["pages"] / 2:
        pytest.skip(
            f"this kernel faults only {off['faults_per_call']:.0f} times per call for "
            f"{off['pages']} pages without the setting (huge pages?): nothing to compare"
        )
    on = _probe("1")
    assert on["took"] is True
    # Measured: 65,536 faults per call off (every page of both blocks), 0 on.
    assert on["faults_per_call"] < off["pages"] / 20, (on, off)


@pytest.mark.parametrize(
    "keep, platforms, plugin, expected",
    [
        ("", "", None, True),  # a CPU-only install
        ("", "", "jax-cuda13-plugin", False),  # temporaries live on the GPU: don't pay compile
        ("", "cpu", "jax-cuda13-plugin", True),  # told to compute on the CPU
        ("", "cuda,cpu", None, False),
        ("0", "cpu", None, False),  # the user's switch wins either way
        ("on", "", "libtpu", True),
    ],
)
def test_on_where_jax_computes_on_the_cpu(monkeypatch, keep, platforms, plugin, expected):
    from aird_jax import host_memory

    monkeypatch.setenv("AIRD_KEEP_HOST_MEMORY", keep)
    monkeypatch.setenv("JAX_PLATFORMS", platforms)
    monkeypatch.setattr(host_memory, "_accelerator_plugin", lambda: plugin)
    assert host_memory.wanted() is expected
