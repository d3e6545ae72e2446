"""Fixtures shared by several test modules."""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def x64():
    """float64 for one test only; restored afterwards so other test modules stay float32."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)
