"""TFDS builders (array_record, no TensorFlow). ``get_builder_class(name)`` imports lazily."""

from __future__ import annotations

import difflib
import importlib

from aird_jax.data.builders.base import (
    AirdBuilder,
    DatasetMissingError,
    StaleBuildError,
    default_root,
)

_REGISTRY = {
    "synthetic_upsampling": ("synthetic_upsampling", "SyntheticUpsampling"),
    "ffpp": ("ffpp", "FFPP"),
    "celeb_df_v2": ("celeb_df_v2", "CelebDFv2"),
    "dfdc_preview": ("dfdc_preview", "DFDCPreview"),
    "deeper_forensics": ("deeper_forensics", "DeeperForensics"),
    "face_folder": ("face_folder", "FaceFolder"),
}
DATASETS = tuple(_REGISTRY)


def get_builder_class(name: str) -> type[AirdBuilder]:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"Unknown dataset {name!r} (data.name / --dataset){hint}; choose from "
            f"{', '.join(_REGISTRY)}."
        )
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(f"aird_jax.data.builders.{module}"), cls)


__all__ = [
    "AirdBuilder",
    "DATASETS",
    "DatasetMissingError",
    "StaleBuildError",
    "default_root",
    "get_builder_class",
]
