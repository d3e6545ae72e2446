"""DFDC Preview (Dolhansky et al., 2019): the 5k-video preview release of the DFDC."""

from __future__ import annotations

import json
from pathlib import Path

import tensorflow_datasets as tfds

from aird_jax.data.builders.base import AirdBuilder, leaf_dirs

INSTRUCTIONS = """\
The DFDC Preview dataset (dfdc_preview_set.zip, ~5k videos) is distributed by Meta AI:
https://ai.meta.com/datasets/dfdc/ (accept the terms; the preview is listed next to the full
DFDC). Unpack it so that
  <root>/manual/dfdc_preview/dataset.json
  <root>/manual/dfdc_preview/original_videos/<id>/<id>_A/<clip>.mp4 ...
  <root>/manual/dfdc_preview/method_A/... , method_B/...
(the paths are the keys of dataset.json). Then extract the faces (mirrors the video tree):
  python scripts/extract_faces.py --videos <root>/manual/dfdc_preview \\
      --dataset dfdc_preview --frames 0"""


class DFDCPreview(AirdBuilder):
    """DFDC Preview split by the ``set`` field of dataset.json (``train`` / ``test``).

    Labels from the ``label`` field ("real"/"fake"); method = the top-level folder of the
    video (``method_A`` / ``method_B``; ``real`` for originals).
    """

    name = "dfdc_preview"
    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.1.0": "video_id without a doubled prefix (the folder is the method); corrupt frames "
        "skipped and listed in aird_build_report.json",
        "1.0.0": "first release",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    HOMEPAGE = "https://ai.meta.com/datasets/dfdc/"

    def _splits(self, dl_manager):
        meta_path = self.require_file("dataset.json")
        try:
            meta = json.loads(meta_path.read_text())
            entries = {
                Path(k).with_suffix("").as_posix(): (
                    str(v["set"]),
                    0 if str(v["label"]).lower() == "real" else 1,
                )
                for k, v in meta.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise self.missing(f"{meta_path} is not the DFDC Preview dataset.json: {e!r}") from None
        index = {"/".join(parts): path for parts, path in leaf_dirs(self.require_faces()).items()}
        if not index:
            raise self.missing(f"no face folders under {self.aird_faces_dir}.")
        # Faces may have been extracted from a sub-folder: match on the longest path suffix.
        by_suffix = {}
        for rel, path in index.items():
            parts = rel.split("/")
            for i in range(len(parts)):
                by_suffix.setdefault("/".join(parts[i:]), path)
        splits: dict[str, list] = {}
        for key, (set_name, label) in sorted(entries.items()):
            path = index.get(key) or by_suffix.get(key)
            if path is None:
                continue
            method = "real" if label == 0 else key.split("/")[0]
            splits.setdefault(set_name, []).append((path, label, method, key))
        for s in ("train", "test"):
            splits.setdefault(s, [])
        return self.split_generators(splits)
