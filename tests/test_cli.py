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


# ------------------------------------------------------------- persistent compilation cache
def test_compile_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    from aird_jax import cli

    monkeypatch.delenv(cli.COMPILE_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cli.compile_cache_dir() == str(tmp_path / "xdg" / "aird_jax" / "xla")
    for off in ("0", "off", "", "false"):
        monkeypatch.setenv(cli.COMPILE_CACHE_ENV, off)
        assert cli.compile_cache_dir() is None
    monkeypatch.setenv(cli.COMPILE_CACHE_ENV, str(tmp_path / "mine"))
    assert cli.compile_cache_dir() == str(tmp_path / "mine")


def test_cli_runs_turn_the_cache_on_and_keep_a_jax_setting(monkeypatch, tmp_path):
    import jax

    from aird_jax import cli

    before = jax.config.jax_compilation_cache_dir
    try:
        monkeypatch.setenv(cli.COMPILE_CACHE_ENV, str(tmp_path / "c"))
        jax.config.update("jax_compilation_cache_dir", None)
        assert cli.run(lambda: 0) == 0
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "c")
        # A folder given to JAX itself wins when AIRD_COMPILE_CACHE is unset.
        monkeypatch.delenv(cli.COMPILE_CACHE_ENV)
        jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax"))
        cli.enable_compile_cache()
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "jax")
        # Off: nothing changes.
        monkeypatch.setenv(cli.COMPILE_CACHE_ENV, "0")
        jax.config.update("jax_compilation_cache_dir", None)
        assert cli.enable_compile_cache() is None
        assert jax.config.jax_compilation_cache_dir is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before)


def test_cli_runs_keep_a_minimum_compile_time_set_for_jax(monkeypatch, tmp_path):
    import jax

    from aird_jax import cli

    before = jax.config.jax_persistent_cache_min_compile_time_secs
    before_dir = jax.config.jax_compilation_cache_dir
    monkeypatch.setenv(cli.COMPILE_CACHE_ENV, str(tmp_path / "c"))
    try:
        # Unset: only programs that take over a second to compile are cached.
        monkeypatch.delenv(cli.MIN_COMPILE_TIME_ENV, raising=False)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.25)
        cli.enable_compile_cache()
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
        # Set (JAX read it at import, as it does for the test suite's 0): kept.
        monkeypatch.setenv(cli.MIN_COMPILE_TIME_ENV, "0.25")
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.25)
        cli.enable_compile_cache()
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.25
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before)
        jax.config.update("jax_compilation_cache_dir", before_dir)
