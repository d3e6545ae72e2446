"""Decoded-frame cache (``data.cache = "decoded"``): every face of a split decoded once, at the
training geometry, kept as raw uint8 pixels in a memory-mapped file next to the build.

Why: PNG/JPEG decoding is most of the input pipeline's cost per image, and it is the same work
every epoch. The cache stores what the decoder gives, brought to the run's geometry with the
same functions the uncached path uses, and nothing else -- no re-encoding, so the frequency
artefacts survive bit for bit:

- ``crop="resize"``: ``preprocess.resize(rgb, image_size)`` (the image training and evaluation
  resize to anyway);
- ``crop="native"``: the native-resolution face (enlarged only if smaller than ``image_size``,
  as ``preprocess.fit`` does first), so random training windows still work.

Resizing / enlarging again is then a no-op, so a cached run reads exactly the pixels an
uncached run decodes: batches are bitwise identical (tested).

Where: ``<build dir>/aird_decoded/<split>-<crop>-<image_size>/`` holding ``pixels.u8`` (all
images, flat), ``shapes.npy`` and ``offsets.npy`` (where each record's image is), and
``meta.json``, written last. ``meta.json`` names what the cache was made from: the build
(name, config, version, ``dataset_info.json``, the source fingerprint of face folders, and the
name, size and modification time of every record file of the split), ``image_size``, ``crop``
and this format's version. A cache whose meta does not match the build it is opened for is
never read: it is rebuilt (under a file lock, so concurrent processes build it once), or, where
the folder cannot be written, refused with a message naming the way out.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from aird_jax.data import index, preprocess

CACHES = ("", "decoded")
FORMAT = 1  # bump when what is stored changes: every older cache is then rebuilt


def data_cache(data_cfg) -> str:
    """A run's ``data.cache`` (runs saved before it existed: "" = off)."""
    return str(data_cfg.get("cache", ""))


def cache_dir(builder, split: str, image_size: int, crop: str) -> Path:
    return Path(builder.data_dir) / "aird_decoded" / f"{split}-{crop}-{int(image_size)}"


def identity(builder, split: str, image_size: int, crop: str) -> dict:
    """What a cache of ``split`` is made from; a cache serves only a build with the same."""
    files = sorted(Path(builder.data_dir).glob(f"*-{split}.array_record*"))
    info = Path(builder.data_dir) / "dataset_info.json"
    stats = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]  # as JSON reads it
    return {
        "format": FORMAT,
        "build": f"{builder.name}/{builder.builder_config.name if builder.builder_config else ''}"
        f"/{builder.version}",
        "dataset_info_sha256": hashlib.sha256(info.read_bytes()).hexdigest()
        if info.is_file()
        else "",
        "source_fingerprint": getattr(builder, "aird_source_fingerprint", None) or "",
        "record_files": stats,
        "split": split,
        "image_size": int(image_size),
        "crop": crop,
    }


def stored_image(rgb: np.ndarray, image_size: int, crop: str) -> np.ndarray:
    """What the cache keeps of a decoded face (``fit``/``train_window`` of it equal theirs of
    ``rgb``): the resized face, or the native one (enlarged only when too small)."""
    if crop == "resize":
        return preprocess.resize(rgb, image_size)
    return preprocess.at_least(rgb, image_size)


def _read_meta(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return None


def _write(folder: Path, source, decode, image_size: int, crop: str, ident: dict) -> None:
    """Decode every record of ``source`` into ``folder`` (meta.json last: it marks complete)."""
    n = len(source)
    shapes = np.zeros((n, 3), np.int32)
    with open(folder / "pixels.u8", "wb") as f:
        for start in range(0, n, 256):
            keys = list(range(start, min(n, start + 256)))
            for k, rec in zip(keys, index.read_many(source, keys)):
                img = stored_image(decode(rec, k), image_size, crop)
                shapes[k] = img.shape
                f.write(np.ascontiguousarray(img, np.uint8).tobytes())
    offsets = np.concatenate([[0], np.cumsum(np.prod(shapes, axis=1, dtype=np.int64))])
    np.save(folder / "shapes.npy", shapes)
    np.save(folder / "offsets.npy", offsets)
    (folder / "meta.json").write_text(json.dumps(ident | {"num_records": n}, indent=1))


def ensure(builder, split: str, image_size: int, crop: str, decode) -> Path:
    """The cache folder of ``split`` for this build and geometry, (re)built if missing or made
    from anything else. ``decode(record, position)`` -> uint8 RGB (the pipeline's decoder,
    which names a corrupt record)."""
    folder = cache_dir(builder, split, image_size, crop)
    ident = identity(builder, split, image_size, crop)
    source = index.data_source(builder, split)
    want = ident | {"num_records": len(source)}
    if _read_meta(folder) == want:
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f".{folder.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _read_meta(folder) != want:  # another process may have built it meanwhile
                tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
                shutil.rmtree(tmp, ignore_errors=True)
                tmp.mkdir()
                _write(tmp, source, decode, image_size, crop, ident)
                shutil.rmtree(folder, ignore_errors=True)  # a stale cache: never served
                os.replace(tmp, folder)
    except OSError as e:
        raise ValueError(
            f"The decoded-frame cache {folder} is missing or was made from another build, and "
            f"it cannot be written ({e.strerror}: {e.filename}): make the build folder "
            "writable with enough space, or run without it (--config.data.cache='')."
        ) from None
    return folder


class DecodedSource:
    """Random access to a split's records with the image already decoded (uint8 [h, w, 3]).

    Records are dicts like the build's (``label``, ``video_id``, ``frame_index``), read from the
    split's record index; the pixels are a view into the memory map (the caller copies what it
    keeps). Pickles without its memory map, so grain worker processes reopen the file instead
    of receiving a copy of it.
    """

    def __init__(self, folder: Path, meta: dict):
        self._folder = Path(folder)
        self._meta = meta
        self._shapes = np.load(self._folder / "shapes.npy")
        self._offsets = np.load(self._folder / "offsets.npy")
        size = (self._folder / "pixels.u8").stat().st_size
        if size != int(self._offsets[-1]) or len(self._shapes) != len(meta["label"]):
            raise ValueError(
                f"The decoded-frame cache {self._folder} is incomplete ({size} bytes, expected "
                f"{int(self._offsets[-1])}): delete that folder and rerun (it is rebuilt)."
            )
        self._pixels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._shapes)

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_pixels"} | {"_pixels": None}

    def _image(self, k: int) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.memmap(self._folder / "pixels.u8", np.uint8, mode="r")
        a, b = int(self._offsets[k]), int(self._offsets[k + 1])
        return self._pixels[a:b].reshape(self._shapes[k])

    def __getitem__(self, k: int) -> dict:
        k = int(k)
        return {
            "image": self._image(k),
            "label": int(self._meta["label"][k]),
            "video_id": str(self._meta["video_id"][k]),
            "frame_index": int(self._meta["frame_index"][k]),
        }

    def __getitems__(self, keys) -> list[dict]:
        return [self[k] for k in keys]


def source(builder, split: str, image_size: int, crop: str, decode) -> DecodedSource:
    """The cached split (built on first use), a drop-in for ``index.data_source``."""
    folder = ensure(builder, split, image_size, crop, decode)
    return DecodedSource(folder, index.record_index(builder, split))
