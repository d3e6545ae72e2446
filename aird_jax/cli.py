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

VERBOSE_ENV = "AIRD_VERBOSE"


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


def run(body: Callable[[], int | None], argv: list[str] | None = None) -> int:
    """Call ``body``; a user error prints one line (plus traceback if verbose) and returns 2."""
    try:
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
