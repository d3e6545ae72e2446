"""Host memory that XLA:CPU reuses from call to call instead of mapping it afresh.

XLA:CPU allocates the temporaries of an executable on every call, as one block, with
``posix_memalign`` from the worker thread that starts the call (the B4 detector's train step at
batch 8, 224 px: 2.6 GB). glibc serves a block that large with a fresh ``mmap`` and returns it with
``munmap`` on ``free``, so every step page-faults and zeroes all of it again: measured 660k minor
faults and 1.2 s of kernel time per 1.9 s step on 2 cores (PyTorch's step: 100k faults, 0.2 s),
while the step's own work took less user time than PyTorch's (2.2 against 2.7 s).

Two remedies, in order of preference (``AIRD_ALLOCATOR`` picks; results are unchanged either way:
only where blocks come from changes, not what is computed):

``tcmalloc`` (gperftools; Debian/Ubuntu: ``apt install libtcmalloc-minimal4``). A CLI run
re-executes itself once, at its start, with the library in ``LD_PRELOAD``
(:func:`relaunch_under_allocator`; a malloc cannot be swapped inside a running process). tcmalloc
keeps freed blocks for reuse and serves threads without glibc's arena lock. Measured on the B4
train step (batch 8, 224 px, 2 cores, alone): 2 faults per step, 1.29-1.34 s per step, compile
26.7 s, resident 5.1-7.6 GB; against glibc's defaults 2.1-2.4 s, 34.4 s, 5.0 GB
(``results/bench/cpu_step.md``).

``glibc``: three ``mallopt`` settings make glibc keep freed memory and hand it out again: one arena
for all threads (a thread's own arena cannot hold a block over 64 MB and falls back to ``mmap``
whatever the other settings say), no ``mmap`` for large blocks, and no trimming of the heap's top.
Measured: 0 faults per step, 1.49-1.53 s per step; but one arena slows XLA's (multi-threaded)
compilation (B4 train step 37-43 s) and the process keeps its peak heap until it exits (resident
4.9 GB, then 7.2 GB from about step 20). The settings govern only threads that have not allocated
yet, so :func:`configure` must run before JAX starts its backend; CLI runs call it first thing in
:func:`aird_jax.cli.run`. It is what ``auto`` uses when tcmalloc is not installed, and what an
in-process call (a notebook, the tests) gets, as those are never re-executed.

``AIRD_ALLOCATOR``: ``auto`` (default: tcmalloc if found, else glibc; only where JAX computes on
the CPU: with an accelerator plugin installed temporaries live in device memory, and nothing is
changed unless ``JAX_PLATFORMS=cpu``), ``tcmalloc``, ``glibc``, ``system`` (change nothing), or the
path of a malloc library to preload (jemalloc, mimalloc: measured no better than glibc's defaults
for jemalloc).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.metadata
import os
import platform
import re
import sys

ALLOCATOR_ENV = "AIRD_ALLOCATOR"
# Set in the re-executed process: never re-execute twice, even if the preload did not take.
RELAUNCHED_ENV = "AIRD_ALLOCATOR_RELAUNCHED"
CHOICES = ("auto", "tcmalloc", "glibc", "system")

# glibc's <malloc.h> parameter numbers.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

# Distributions that give JAX a non-CPU backend.
_ACCELERATOR_PLUGINS = ("jax-cuda", "jax_cuda", "jax-rocm", "jax_rocm", "libtpu")
# Malloc replacements recognised in /proc/self/maps.
_ALLOCATOR_LIBS = re.compile(r"/lib(tcmalloc\w*|jemalloc|mimalloc)[.-][^/]*$")


class AllocatorError(ValueError):
    """``AIRD_ALLOCATOR`` names something that cannot be used; the message says what to do."""


def _accelerator_plugin() -> str | None:
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith(_ACCELERATOR_PLUGINS):
            return name
    return None


def computes_on_cpu() -> bool:
    """True when JAX will compute on the CPU: ``JAX_PLATFORMS`` starts with ``cpu``, or it is unset
    and no accelerator plugin is installed."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms.split(",")[0] == "cpu"
    return _accelerator_plugin() is None


@functools.lru_cache(maxsize=1)  # find_library runs ldconfig; choice() and the relaunch both ask
def find_tcmalloc() -> str | None:
    """The tcmalloc library the dynamic loader finds (``libtcmalloc_minimal.so.4``), or None."""
    if platform.system() != "Linux":
        return None
    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found:
            return found
    return None


def choice() -> str:
    """What ``AIRD_ALLOCATOR`` asks for, resolved: ``tcmalloc``, ``glibc``, ``system`` or a path.

    Raises :class:`AllocatorError` for a value that is none of these.
    """
    raw = os.environ.get(ALLOCATOR_ENV, "").strip()
    value = raw.lower()
    if value in ("", "auto"):
        if not computes_on_cpu():
            return "system"
        return "tcmalloc" if find_tcmalloc() else "glibc"
    if value in ("system", "default", "0", "off", "none"):
        return "system"
    if value in ("tcmalloc", "glibc"):
        return value
    if "/" in raw or ".so" in raw:
        if not os.path.isfile(os.path.expanduser(raw)):
            raise AllocatorError(
                f"{ALLOCATOR_ENV}={raw}: no such file; give the path of a malloc library "
                f"(e.g. libtcmalloc_minimal.so.4) or one of {', '.join(CHOICES)}"
            )
        return os.path.abspath(os.path.expanduser(raw))
    raise AllocatorError(
        f"{ALLOCATOR_ENV}={raw} is not understood; use one of {', '.join(CHOICES)} or the path "
        "of a malloc library to preload"
    )


def preloaded() -> str | None:
    """The malloc replacement loaded into this process (tcmalloc, jemalloc, mimalloc, or the
    library ``AIRD_ALLOCATOR`` names), as its path in ``/proc/self/maps``; None if there is none."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[-1].strip() for line in f if "/" in line}
    except OSError:
        return None
    wanted = os.environ.get(ALLOCATOR_ENV, "").strip()
    named = os.path.realpath(os.path.expanduser(wanted)) if "/" in wanted else None
    for path in sorted(paths):
        if _ALLOCATOR_LIBS.search(path) or (named and os.path.realpath(path) == named):
            return path
    return None


def relaunch_under_allocator() -> None:
    """At a command-line entry point's start: re-execute this process once with the allocator
    :func:`choice` names in ``LD_PRELOAD`` (same interpreter, arguments, working directory and
    process id). Returns when there is nothing to do: glibc or system chosen, no tcmalloc found,
    already loaded or already relaunched, not Linux. A bad ``AIRD_ALLOCATOR`` ends the process
    with one ``error:`` line and status 2.

    Only ``if __name__ == "__main__":`` blocks call it; never a library function, which would
    replace its caller's process.
    """
    if platform.system() != "Linux" or os.environ.get(RELAUNCHED_ENV) or preloaded():
        return
    try:
        chosen = choice()
    except AllocatorError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if chosen == "tcmalloc":
        lib = find_tcmalloc()
        if lib is None:
            print(
                f"error: {ALLOCATOR_ENV}=tcmalloc but no tcmalloc library is installed; install "
                "it (Debian/Ubuntu: apt install libtcmalloc-minimal4) or unset "
                f"{ALLOCATOR_ENV}",
                file=sys.stderr,
            )
            raise SystemExit(2)
    elif os.path.isabs(chosen):
        lib = chosen
    else:
        return
    argv = getattr(sys, "orig_argv", None)
    if not sys.executable or not argv:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(filter(None, (lib, env.get("LD_PRELOAD"))))
    env[RELAUNCHED_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def keep_freed_memory() -> bool:
    """Make glibc reuse freed blocks instead of unmapping them; True if the settings took.

    False off glibc (macOS, musl).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
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


def configure() -> str:
    """Settle the allocator of this process before JAX starts; returns the one in effect.

    ``tcmalloc``/``jemalloc``/... (the library's file name) when one is preloaded (nothing to do);
    else ``glibc`` if :func:`choice` is not ``system`` and the glibc settings took (also when
    tcmalloc was asked for but this process was not relaunched under it); else ``system``.
    Raises :class:`AllocatorError` for a bad ``AIRD_ALLOCATOR``.
    """
    loaded = preloaded()
    if loaded:
        return os.path.basename(loaded)
    if choice() == "system":
        return "system"
    return "glibc" if keep_freed_memory() else "system"
