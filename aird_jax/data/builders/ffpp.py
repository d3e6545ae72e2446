"""FaceForensics++ (Roessler et al., ICCV 2019): originals + four manipulation methods."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import tensorflow_datasets as tfds

from aird_jax.data.builders.base import AirdBuilder, leaf_dirs

METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
COMPRESSIONS = ("c23", "c40", "raw")
SPLITS = ("train", "val", "test")

INSTRUCTIONS = """\
FaceForensics++ must be requested from its authors: fill in the form linked from
https://github.com/ondyari/FaceForensics (you receive a download script), then e.g.
  python download-FaceForensics.py <root>/manual/ffpp -d original -c c23 -t videos
  python download-FaceForensics.py <root>/manual/ffpp -d Deepfakes -c c23 -t videos
  (and Face2Face, FaceSwap, NeuralTextures; -c c40 / raw for the other configs)
Expected layout (the download script's own):
  <root>/manual/ffpp/original_sequences/youtube/<c23|c40|raw>/videos/000.mp4 ...
  <root>/manual/ffpp/manipulated_sequences/<Method>/<c23|c40|raw>/videos/000_003.mp4 ...
  <root>/manual/ffpp/splits/{train,val,test}.json   (copy dataset/splits/*.json from the
                                                     FaceForensics GitHub repository)
Then extract the faces (mirrors the video tree):
  python scripts/extract_faces.py --videos <root>/manual/ffpp --dataset ffpp --frames 0
giving <root>/faces/ffpp/original_sequences/youtube/c23/videos/000/<frame:06d>.png etc."""


class FFPP(AirdBuilder):
    """FaceForensics++ with the OFFICIAL split (dataset/splits/{train,val,test}.json).

    A split entry ``[a, b]`` means the real videos ``a`` and ``b`` and, for each of the four
    methods, the fakes ``a_b`` and ``b_a``: 360/70/70 pairs -> 720/140/140 real and 4x that
    many fake videos. Frames are the faces extracted by scripts/extract_faces.py; the training
    pipeline samples ``frames_per_video`` of them per video, evaluation uses all.
    """

    name = "ffpp"
    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=c, description=f"FF++ {c} videos") for c in COMPRESSIONS
    ]
    DEFAULT_CONFIG_NAME = "c23"
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    HOMEPAGE = "https://github.com/ondyari/FaceForensics"

    def split_pairs(self) -> dict[str, list[tuple[str, str]]]:
        out = {}
        for split in SPLITS:
            path = self.require_file(
                f"splits/{split}.json", f"{split}.json", f"dataset/splits/{split}.json"
            )
            try:
                pairs = json.loads(Path(path).read_text())
                out[split] = [(str(a), str(b)) for a, b in pairs]
            except (ValueError, TypeError) as e:
                raise self.missing(
                    f"{path} is not an FF++ split file (list of [a, b]): {e}"
                ) from None
        return out

    def _index(self) -> dict[tuple[str, str], Path]:
        """(method or "real", video id) -> face folder, for this config's compression."""
        comp = self.builder_config.name
        out: dict[tuple[str, str], Path] = {}
        for parts, path in leaf_dirs(self.require_faces()).items():
            comps = [p for p in parts if p in COMPRESSIONS]
            if comps and comps[-1] != comp:
                continue
            if "actors" in parts:  # DeepFakeDetection originals, not part of FF++'s 1000
                continue
            if "youtube" in parts or "original_sequences" in parts:
                out[("real", parts[-1])] = path
            else:
                for m in METHODS:
                    if m in parts:
                        out[(m, parts[-1])] = path
        return out

    def videos(self, split: str, pairs, index) -> list[tuple[Path, int, str, str]]:
        wanted = []
        for a, b in pairs:
            wanted += [("real", a, 0), ("real", b, 0)]
            for m in METHODS:
                wanted += [(m, f"{a}_{b}", 1), (m, f"{b}_{a}", 1)]
        found = [(index[(m, v)], lab, m, v) for m, v, lab in wanted if (m, v) in index]
        missing = len(wanted) - len(found)
        if missing:
            logging.warning(
                "ffpp/%s %s: %d of %d videos have no extracted faces (skipped).",
                self.builder_config.name,
                split,
                missing,
                len(wanted),
            )
        return found

    def _splits(self, dl_manager):
        pairs = self.split_pairs()
        index = self._index()
        if not index:
            raise self.missing(
                f"no FF++ {self.builder_config.name} face folders under {self.aird_faces_dir}."
            )
        return self.split_generators(
            {split: self.videos(split, pairs[split], index) for split in SPLITS}
        )
