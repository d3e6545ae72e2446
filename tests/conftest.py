"""Fixtures shared by several test modules, and the session's compilation cache."""

from __future__ import annotations

import os
import shutil
import tempfile

# Why: most of the suite's time is XLA compiling the same tiny train/eval programs again, here and
# in the CLI subprocesses tests start. One persistent compilation cache for the whole session lets
# each program compile once. It is safe to share: an entry is keyed by the lowered program (HLO),
# compile options, backend and jax version, so a hit is the executable a fresh compile would give.
# Environment variables, set before jax is imported, reach every subprocess too (the CLIs keep
# JAX_COMPILATION_CACHE_DIR and its minimum compile time, aird_jax.cli.enable_compile_cache). A
# folder the caller chose (CI keeps one beside its venv) is used; else a temporary one, removed
# at the end of the session (pytest_unconfigure).
_OWN_CACHE: str | None = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _OWN_CACHE = tempfile.mkdtemp(prefix="aird_tests_xla_")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
# The CLIs' own setting would otherwise send their programs to the user's folder.
os.environ["AIRD_COMPILE_CACHE"] = os.environ["JAX_COMPILATION_CACHE_DIR"]
# Cache every program, however quick to compile or small: the tests' programs are all tiny.
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import jax  # noqa: E402  (after the environment above)
import pytest  # noqa: E402

# In case a plugin imported jax before this file set the environment.
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture
def x64():
    """float64 for one test only; restored afterwards so other test modules stay float32."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)
