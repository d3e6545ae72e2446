"""cli.run: a user error ends in one line (traceback only when asked), a bug still raises."""

from __future__ import annotations

import errno

import pytest

from aird_jax import cli


def _raise(e: BaseException):
    def body():
        raise e

    return body


def test_user_error_is_one_line_without_traceback(capsys, monkeypatch):
    monkeypatch.delenv(cli.VERBOSE_ENV, raising=False)
    assert cli.run(_raise(ValueError("bad value x; use y")), argv=["prog"]) == 2
    err = capsys.readouterr().err
    assert err == "error: bad value x; use y\n"


def test_verbose_shows_the_traceback(capsys, monkeypatch):
    monkeypatch.setenv(cli.VERBOSE_ENV, "1")
    assert cli.run(_raise(FileNotFoundError("no such run")), argv=["prog"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().endswith("error: no such run")


def test_disk_full_names_the_cause():
    e = OSError(errno.ENOSPC, "No space left on device", "/runs/x/ckpt")
    assert cli.one_line(e) == (
        "error: the disk is full while writing /runs/x/ckpt; free space (or pick another "
        "--workdir) and rerun"
    )


def test_a_bug_still_raises():
    with pytest.raises(RuntimeError):
        cli.run(_raise(RuntimeError("bug")), argv=["prog"])
    assert cli.run(lambda: None, argv=["prog"]) == 0


def test_disk_full_wrapped_by_a_library_is_still_one_line(capsys, monkeypatch):
    # Orbax/TensorBoard may re-raise the OS error inside their own exception.
    monkeypatch.delenv(cli.VERBOSE_ENV, raising=False)

    def body():
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/ckpt")
        except OSError as e:
            raise RuntimeError("checkpoint save failed") from e

    assert cli.run(body, argv=["prog"]) == 2
    assert capsys.readouterr().err == (
        "error: the disk is full while writing /runs/x/ckpt; free space (or pick another "
        "--workdir) and rerun\n"
    )
