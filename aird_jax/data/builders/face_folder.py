"""Any folder of face images laid out as ``real/`` + ``fake/<method>/`` (a user's own data)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import tensorflow_datasets as tfds

from aird_jax.data.builders.base import (
    AirdBuilder,
    frame_index_from_name,
    list_images,
    source_fingerprint,
    video_key,
)

INSTRUCTIONS = """\
Point data.manual_dir (or <root>/manual/face_folder) at a folder of face crops:
  <dir>/real/<image>            or  <dir>/real/<video>/<frame>.png
  <dir>/fake/<method>/<image>   or  <dir>/fake/<method>/<video>/<frame>.png
Optionally split it yourself with <dir>/{train,val,test}/real/... and .../fake/<method>/...,
or with file-name prefixes train_ / val_ / test_ (as in ../shared/data/ffpp_faces299).
Images: PNG/JPEG/BMP/WebP (stored byte for byte, no re-encoding)."""

_SPLITS = ("train", "val", "test")
_PREFIX = re.compile(r"^(train|val|test)_")


def _bucket(video_key: str) -> str:
    """Stable 80/10/10 split by video (md5, not Python's salted hash)."""
    h = int(hashlib.md5(video_key.encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 80 else ("val" if h < 90 else "test")


class FaceFolder(AirdBuilder):
    """A ``real/`` + ``fake/<method>/`` tree of face images.

    Splits, first rule that applies: (1) sub-folders ``train/``, ``val/``, ``test/``;
    (2) file-name prefixes ``train_`` / ``val_`` / ``test_`` on every image (``val`` is then
    carved from ``train`` by the md5 of the video id, 1 in 10, if no ``val_`` files exist);
    (3) an md5-of-video-id 80/10/10 split. Images directly in ``real/`` or
    ``fake/<method>/`` are one-frame videos; sub-folders there are videos whose images are
    frames. NOTE: frames of one video, and a fake and the real it was made from, are
    near-duplicates; rule (3) splits by video but cannot know such pairs.

    The build is keyed by the folder's content: its config is ``src_<fingerprint>``
    (:func:`~aird_jax.data.builders.base.source_fingerprint`: relative paths, sizes and
    content digests of the images), so it lands in
    ``<tfds>/face_folder/src_<fingerprint>/<version>``. Pointing ``data.manual_dir`` at another folder, or changing the folder, builds anew on first use
    instead of silently serving the records of the folder built before; builds of several
    folders coexist. (Rebuilding rather than refusing: the user asked for that folder, and a
    face-folder build is a copy of its images, quick to redo.)
    """

    name = "face_folder"
    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTRUCTIONS
    IS_VIDEO = True

    @classmethod
    def source_key(cls, manual_dir: Path, faces_dir: Path) -> str:
        return source_fingerprint(manual_dir)

    def _source_config(self, config):
        if isinstance(config, tfds.core.BuilderConfig) and config.name.startswith("src_"):
            # A builder re-created from its pickled state (grain worker processes) passes the
            # config this method made.
            self.aird_source_fingerprint = config.name.removeprefix("src_")
            return config
        if config is not None:
            raise ValueError(
                f"Dataset {self.name!r} has no configs (got {config!r}); its build is keyed by "
                "the content of data.manual_dir. Leave data.config empty."
            )
        if not self.aird_source_fingerprint:
            self.aird_source_fingerprint = source_fingerprint(self.aird_manual_dir)
        return tfds.core.BuilderConfig(
            name=f"src_{self.aird_source_fingerprint}",
            description=f"built from {self.aird_manual_dir}",
        )

    def source_description(self) -> str:
        return str(self.aird_manual_dir)

    def source_manifests(self) -> list[Path]:
        return []  # the build is keyed by the folder's content itself

    def _items(self, top: Path) -> list[tuple[Path, int, str, str, int]]:
        """(image, label, method, video, frame) under one real/ + fake/ tree."""
        out = []
        groups = [(top / "real", 0, "real")]
        fake = top / "fake"
        if fake.is_dir():
            groups += [(d, 1, d.name) for d in sorted(fake.iterdir()) if d.is_dir()]
        for folder, label, method in groups:
            if not folder.is_dir():
                continue
            for img in list_images(folder):
                out.append((img, label, method, img.stem, 0))
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                for img in list_images(sub):
                    out.append((img, label, method, sub.name, frame_index_from_name(img)))
        return out

    def _splits(self, dl_manager):
        root = self.aird_manual_dir
        if not root.is_dir():
            raise self.missing(f"folder {root} does not exist.")
        splits: dict[str, list] = {s: [] for s in _SPLITS}
        if any((root / s).is_dir() for s in _SPLITS):
            for s in _SPLITS:
                if (root / s).is_dir():
                    splits[s] = self._items(root / s)
        else:
            items = self._items(root)
            prefixed = bool(items) and all(_PREFIX.match(it[0].name) for it in items)
            has_val = any(it[0].name.startswith("val_") for it in items)
            for it in items:
                vkey = f"{it[2]}/{it[3]}"
                if prefixed:
                    s = _PREFIX.match(it[0].name).group(1)
                    if s == "train" and not has_val:
                        s = "val" if _bucket(vkey) == "val" else "train"
                else:
                    s = _bucket(vkey)
                splits[s].append(it)
        everything = [it for s in _SPLITS for it in splits[s]]
        if not everything:
            raise self.missing(f"no images under {root}/real or {root}/fake/<method>.")
        if not any(it[1] == 1 for it in everything) or not any(it[1] == 0 for it in everything):
            raise self.missing(f"{root} needs both real/ and fake/<method>/ images.")
        # tfds cannot write an empty split: leave those out (the pipeline names the ones left).
        return {s: self._examples(v) for s, v in splits.items() if v}

    def _examples(self, items):
        for img, label, method, video, frame in items:
            vid = video_key(method, video)
            yield (
                f"{vid}/{img.name}",
                {
                    "image": img,  # read and decode-checked by AirdBuilder._indexed
                    "label": label,
                    "method": method,
                    "video_id": vid,
                    "frame_index": frame,
                },
            )
