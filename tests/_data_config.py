"""Data configs for the data tests: the ``data`` block of a real config, with overrides.

The pipeline reads values as they are (the config file is the only home of defaults), so tests
pass what a run passes: ``load_config("configs/late_supcon.py:smoke").data`` with fields set.
"""

from __future__ import annotations

import ml_collections

from aird_jax.config import load_config


def data_config(**overrides) -> ml_collections.ConfigDict:
    """The smoke variant's ``data`` block with ``overrides`` (existing keys only)."""
    return with_(load_config("configs/late_supcon.py:smoke").data, **overrides)


def with_(cfg: ml_collections.ConfigDict, **overrides) -> ml_collections.ConfigDict:
    """A copy of ``cfg`` with ``overrides``; a misspelt key raises KeyError."""
    out = cfg.copy_and_resolve_references()
    for key, value in overrides.items():
        if key not in out:
            raise KeyError(f"data config has no key {key!r}")
        out[key] = value
    return out
