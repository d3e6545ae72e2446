"""DeeperForensics-1.0 (Jiang et al., CVPR 2020): end_to_end fakes with their FF++ reals."""

from __future__ import annotations

import json
import os
from pathlib import Path

import tensorflow_datasets as tfds

from aird_jax.data.builders.base import FACES_MANIFEST, AirdBuilder, leaf_dirs

INSTRUCTIONS = """\
DeeperForensics-1.0 must be requested from its authors:
https://github.com/EndlessSora/DeeperForensics-1.0 (terms of use form). Place it so that
  <root>/manual/deeper_forensics/manipulated_videos/end_to_end/000_M101.mp4 ...
  <root>/manual/deeper_forensics/lists/splits/{train,val,test}.txt   (official split lists)
Its reals are the FaceForensics++ originals the fakes were made on (target id = the part before
"_"), so the FF++ originals must be extracted too (see the ffpp instructions):
  <root>/faces/ffpp/original_sequences/youtube/c23/videos/000/<frame:06d>.png
For the "ffpp_test" config also the FF++ split files (<root>/manual/ffpp/splits/test.json).
Extract the DeeperForensics faces (mirrors the video tree):
  python scripts/extract_faces.py \\
      --videos <root>/manual/deeper_forensics/manipulated_videos/end_to_end \\
      --out <root>/faces/deeper_forensics/manipulated_videos/end_to_end --frames 0"""


class DeeperForensics(AirdBuilder):
    """DeeperForensics-1.0 ``end_to_end`` fakes (the undistorted ones) with paired reals.

    The literature uses two protocols; both are configs here:

    * ``official`` (default): DF-1.0's own lists/splits/{train,val,test}.txt select the fakes;
      the reals of a split are the FF++ c23 originals that those fakes were made on (target id =
      the prefix of ``000_M101``), so each split is paired 1:1 by video.
    * ``ffpp_test``: only a ``test`` split, the fakes whose target id is in the FF++ official
      test split plus those 140 FF++ c23 test originals (as in LipForensics / FTCN-style
      cross-dataset tables). No identity overlap with FF++ training.

    Reals are read from the FF++ faces folder (``ffpp_faces_dir``, default
    ``<faces_dir>/../ffpp``), so the FF++ originals must be extracted first.
    """

    name = "deeper_forensics"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="official", description="DF-1.0 split lists"),
        tfds.core.BuilderConfig(name="ffpp_test", description="FF++ test ids only"),
    ]
    DEFAULT_CONFIG_NAME = "official"
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    HOMEPAGE = "https://github.com/EndlessSora/DeeperForensics-1.0"

    def __init__(self, *, ffpp_faces_dir: str | os.PathLike | None = None, **kwargs):
        super().__init__(**kwargs)
        self.ffpp_faces_dir = (
            Path(ffpp_faces_dir) if ffpp_faces_dir else self.aird_faces_dir.parent / "ffpp"
        )

    def source_manifests(self) -> list[Path]:
        # Its real faces are FF++'s.
        return [*super().source_manifests(), self.ffpp_faces_dir / FACES_MANIFEST]

    def _fakes(self) -> dict[str, Path]:
        return {
            parts[-1]: path
            for parts, path in leaf_dirs(self.require_faces()).items()
            if "end_to_end" in parts[:-1]
        }

    def _reals(self) -> dict[str, Path]:
        if not self.ffpp_faces_dir.is_dir():
            raise self.missing(
                f"the paired FF++ originals are missing: no folder {self.ffpp_faces_dir}."
            )
        out = {}
        for parts, path in leaf_dirs(self.ffpp_faces_dir).items():
            if "youtube" in parts and ("c23" in parts or not {"c40", "raw"} & set(parts)):
                out[parts[-1]] = path
        return out

    def _read_list(self, split: str) -> list[str]:
        path = self.require_file(f"lists/splits/{split}.txt", f"{split}.txt")
        return [Path(x.strip()).stem for x in path.read_text().splitlines() if x.strip()]

    def _ffpp_test_ids(self) -> set[str]:
        for d in (self.aird_manual_dir, self.aird_manual_dir.parent / "ffpp"):
            for rel in ("splits/test.json", "test.json"):
                if (d / rel).is_file():
                    return {str(v) for pair in json.loads((d / rel).read_text()) for v in pair}
        raise self.missing("the ffpp_test config needs the FF++ split file splits/test.json.")

    def _splits(self, dl_manager):
        fakes, reals = self._fakes(), self._reals()
        if not fakes:
            raise self.missing(f"no end_to_end face folders under {self.aird_faces_dir}.")
        if self.builder_config.name == "official":
            selection = {s: self._read_list(s) for s in ("train", "val", "test")}
        else:
            ids = self._ffpp_test_ids()
            selection = {"test": sorted(f for f in fakes if f.split("_")[0] in ids)}
        out = {}
        for split, names in selection.items():
            videos = [(fakes[n], 1, "end_to_end", n) for n in names if n in fakes]
            targets = sorted({n.split("_")[0] for n in names if n in fakes})
            videos += [(reals[t], 0, "real", t) for t in targets if t in reals]
            out[split] = videos
        return self.split_generators(out)
