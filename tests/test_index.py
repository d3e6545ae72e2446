"""Record selection (data/index.py): the prepared-builder cache follows the resolved data root.

Expected locations are computed from the environment the test sets, not from the module."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from _data_config import data_config

from aird_jax.data import index, pipeline


def _folder(top: Path) -> None:
    """A minimal face_folder tree: 2 real and 1 fake training image."""
    rng = np.random.default_rng(0)
    for rel in ("real/train_000.png", "real/train_001.png", "fake/Deepfakes/train_000.png"):
        p = top / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def test_prepared_builder_follows_aird_data_dir(tmp_path, monkeypatch):
    """``data.root = ""`` means ``$AIRD_DATA_DIR``: changing it in-process must be seen (the
    cache is keyed on the resolved root, not on the empty string)."""
    _folder(tmp_path / "faces")
    cfg = data_config(
        name="face_folder",
        config="",
        root="",
        manual_dir=str(tmp_path / "faces"),
        frames_per_video=0,
        max_examples=0,
    )
    for name in ("a", "b"):
        root = tmp_path / name
        monkeypatch.setenv("AIRD_DATA_DIR", str(root))
        builder = index.prepared_builder(cfg)
        assert Path(builder.data_dir).is_relative_to(root / "tfds"), (builder.data_dir, root)
        assert pipeline.num_examples(cfg, "train") == 3
        assert any((root / "tfds").rglob("*.array_record*"))  # built there, not elsewhere
    # Same resolved location -> the same cached builder.
    assert index.prepared_builder(cfg) is index.prepared_builder(cfg)
