"""How a command-line entry point ends on a user's mistake: one line naming the cause and the fix,
no Python traceback (``AIRD_VERBOSE=1`` or ``--verbose`` shows it, for bug reports).

Every CLI (``python -m aird_jax.main``, ``python -m aird_jax.predict``, ``scripts/*.py``) runs its
body through :func:`run`. Bugs (anything not listed in :data:`USER_ERRORS`) still raise with the
full traceback.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable

from aird_jax import host_memory

VERBOSE_ENV = "AIRD_VERBOSE"
# Persistent XLA compilation cache for CLI runs: a B4 train step takes ~40 s to compile on a
# CPU, and every run, resume, seed and evaluation of the same shapes compiles the same programs.
# Unset: ~/.cache/aird_jax/xla (or $XDG_CACHE_HOME/aird_jax/xla); "0"/"off": disabled; else a
# folder. Cached executables are XLA's own output for the same program and flags: results are
# unchanged.
COMPILE_CACHE_ENV = "AIRD_COMPILE_CACHE"
MIN_COMPILE_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"  # JAX reads it at import


class UserError(Exception):
    """A problem the user can fix; the message says how."""


# Errors whose message is meant for the user (the code raising them names cause and fix).
USER_ERRORS: tuple[type[BaseException], ...] = (
    UserError,
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FloatingPointError,  # training divergence (train.TrainingDiverged)
    KeyError,
)


def verbose(argv: list[str] | None = None) -> bool:
    """True when the user asked for tracebacks (``--verbose`` or ``AIRD_VERBOSE=1``)."""
    argv = sys.argv if argv is None else argv
    return "--verbose" in argv or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def one_line(e: BaseException) -> str:
    """The message of ``e`` as the user sees it: ``error: <message>``.

    The first line carries the cause and the fix; later lines (instructions a builder prints, a
    list of differing keys) are kept, but no traceback.
    """
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        where = f" while writing {e.filename}" if e.filename else ""
        return f"error: the disk is full{where}; free space (or pick another --workdir) and rerun"
    msg = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    return f"error: {msg.strip() or type(e).__name__}"


_USER_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT)


def _user_os_error(e: BaseException) -> OSError | None:
    """The OSError a user can fix (disk full, read-only, ...) behind ``e``, also when a library
    (Orbax, TensorBoard) re-raised it wrapped in another exception."""
    seen = 0
    while e is not None and seen < 20:
        if isinstance(e, OSError) and e.errno in _USER_ERRNOS:
            return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def compile_cache_dir() -> str | None:
    """Where CLI runs keep compiled XLA programs (``AIRD_COMPILE_CACHE``), or None when off."""
    value = os.environ.get(COMPILE_CACHE_ENV)
    if value is not None and value.strip().lower() in ("", "0", "off", "false", "no"):
        return None
    if value:
        return os.path.expanduser(value)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "aird_jax", "xla")


def enable_compile_cache() -> str | None:
    """Turn on JAX's persistent compilation cache at :func:`compile_cache_dir` (if not off).

    A cache folder the user already gave JAX (``JAX_COMPILATION_CACHE_DIR``) is kept unless
    ``AIRD_COMPILE_CACHE`` says otherwise.
    """
    path = compile_cache_dir()
    if path is None:
        return None
    import jax  # here, not at import time: ``aird_jax.cli`` stays cheap to import

    current = jax.config.jax_compilation_cache_dir
    if current and os.environ.get(COMPILE_CACHE_ENV) is None:
        path = current
    jax.config.update("jax_compilation_cache_dir", path)
    # Only programs worth caching (the steps and forwards), not every tiny helper jit; unless the
    # user set JAX's own threshold (the test suite caches everything: its programs are tiny).
    if os.environ.get(MIN_COMPILE_TIME_ENV) is None:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path


def run(body: Callable[[], int | None], argv: list[str] | None = None) -> int:
    """Call ``body``; a user error prints one line (plus traceback if verbose) and returns 2.

    CLI runs get the persistent compilation cache (:func:`enable_compile_cache`) and host memory
    that XLA:CPU reuses between calls (:func:`aird_jax.host_memory.configure`: first, as it must
    precede the JAX backend's start; the entry point's ``__main__`` block has already relaunched
    the process under tcmalloc where that is chosen).
    """
    try:
        host_memory.configure()
        enable_compile_cache()
        return int(body() or 0)
    except Exception as e:
        os_error = _user_os_error(e)
        if os_error is not None and not isinstance(e, USER_ERRORS):
            shown: BaseException = os_error
        elif isinstance(e, USER_ERRORS):
            shown = os_error if os_error is not None and os_error.errno == errno.ENOSPC else e
        else:
            raise
        if verbose(argv):
            traceback.print_exc()
        print(one_line(shown), file=sys.stderr)
        return 2
