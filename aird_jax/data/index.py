"""Which records a run reads: the configured builder, the per-split record index and the selection.

``prepared_builder(data_cfg)`` constructs the configured TFDS builder with the contract's default
paths under ``data.root`` (``""`` = ``$AIRD_DATA_DIR`` or ``<repo>/data``), builds it on first use
and caches it per RESOLVED location, so a changed ``$AIRD_DATA_DIR`` is seen within one process.

``record_index`` gives each record's label / video_id / frame_index / method without decoding an
image; ``select`` applies, in order, the method filter (``data.methods``: "A,B", "" = all; reals
are always kept), per-video frame sampling and the example cap.

``data_cfg`` is the ``data`` block of a config made from ``configs/*.py``: values are read as
they are (the config file is the only home of defaults).
"""

from __future__ import annotations

import fcntl
import functools
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from aird_jax.data.builders import AirdBuilder, default_root, get_builder_class
from aird_jax.data.video import sample_frame_indices

__all__ = [
    "check_split",
    "data_root",
    "data_source",
    "dataset_methods",
    "ensure_built",
    "get_builder",
    "method_mask",
    "parse_methods",
    "prepared_builder",
    "read_many",
    "record_index",
    "select",
    "select_train",
    "source_key",
]


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def data_root(data_cfg) -> Path:
    """``data.root``, or the default root (``$AIRD_DATA_DIR``, else ``<repo>/data``) if empty."""
    return Path(data_cfg.root).expanduser() if data_cfg.root else default_root()


Location = tuple[str, str, str, str, str, str]


def _location(data_cfg) -> Location:
    """(name, config, tfds dir, manual dir, faces dir, source key) with every default resolved
    to an absolute path: what identifies a build, so the cache key of ``prepared_builder``. The
    source key is the builder's :meth:`~AirdBuilder.source_key` (face_folder: the content
    fingerprint of its folder), so a changed folder is seen within one process too."""
    name = data_cfg.name
    cls = get_builder_class(name)
    root = data_root(data_cfg)
    # `faces_dir` is newer than some saved runs: .get keeps their config.json loadable.
    faces = data_cfg.get("faces_dir", "") or root / "faces" / name
    manual = data_cfg.manual_dir or root / "manual" / name
    root, manual, faces = (os.path.abspath(p) for p in (root / "tfds", manual, faces))
    source = cls.source_key(Path(manual), Path(faces))
    return (name, data_cfg.config or "", root, manual, faces, source)


def source_key(data_cfg) -> str:
    """What the dataset was built from, beyond its name and config ("" for most builders;
    face_folder: the content fingerprint of its folder). Outputs derived from a build (e.g.
    evaluation files) carry it, so two folders never share a result file."""
    return _location(data_cfg)[5]


def _make_builder(
    name: str, config: str, data_dir: str, manual_dir: str, faces_dir: str, source: str = ""
):
    return get_builder_class(name)(
        config=config or None,
        data_dir=Path(data_dir),
        manual_dir=Path(manual_dir),
        faces_dir=Path(faces_dir),
        source_fingerprint=source or None,
    )


def get_builder(data_cfg) -> AirdBuilder:
    """Construct the configured builder with the contract's default paths under ``root``."""
    return _make_builder(*_location(data_cfg))


def ensure_built(builder: AirdBuilder) -> AirdBuilder:
    """Build on first use (raises DatasetMissingError with instructions if data is missing).

    A file lock makes concurrent first uses (several processes on one host) build once."""
    if builder.is_prepared():
        return builder
    lock_dir = Path(builder.data_dir_root)
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f".{builder.name}.build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not builder.is_prepared():  # another process may have built it meanwhile
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(
                    manual_dir=os.fspath(builder.aird_manual_dir)
                )
            )
    return builder


@functools.lru_cache(maxsize=16)
def _prepared(location: Location) -> AirdBuilder:
    ensure_built(_make_builder(*location))
    # A fresh instance reads the DatasetInfo from disk, also when another process built it.
    builder = _make_builder(*location)
    builder.check_not_stale()
    return builder


def prepared_builder(data_cfg) -> AirdBuilder:
    """The configured builder, built on first use; cached per resolved location (name, config,
    tfds/manual/faces folders after defaults, source fingerprint), so changing
    ``$AIRD_DATA_DIR`` or the content of a face folder is seen."""
    return _prepared(_location(data_cfg))


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------
def check_split(builder: AirdBuilder, split: str) -> None:
    splits = list(builder.info.splits.keys())
    if split not in splits:
        raise ValueError(f"Dataset {builder.name!r} has no split {split!r}; it has {splits}.")


def data_source(builder: AirdBuilder, split: str):
    """Random-access records of ``split`` with the image left encoded (bytes)."""
    check_split(builder, split)
    return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})


def read_many(source, keys: list[int]) -> list:
    """Batched random reads (array_record reads them in parallel) when the source can."""
    if not keys:
        return []
    if hasattr(source, "__getitems__"):
        return list(source.__getitems__(keys))
    return [source[k] for k in keys]


def to_str(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def _scan(builder: AirdBuilder, split: str) -> dict[str, np.ndarray]:
    """The index by one sequential pass over the records (no image decoding)."""
    src = data_source(builder, split)
    n = len(src)
    labels = np.zeros(n, np.int8)
    frames = np.zeros(n, np.int32)
    vids: list[str] = []
    methods: list[str] = []
    chunk = 512
    for start in range(0, n, chunk):
        keys = list(range(start, min(n, start + chunk)))
        for k, r in zip(keys, read_many(src, keys)):
            labels[k] = int(r["label"])
            frames[k] = int(r["frame_index"])
            vids.append(to_str(r["video_id"]))
            methods.append(to_str(r["method"]))
    return {
        "label": labels,
        "video_id": np.asarray(vids, dtype=str),
        "frame_index": frames,
        "method": np.asarray(methods, dtype=str),
    }


def record_index(
    builder: AirdBuilder, split: str, *, need_method: bool = False
) -> dict[str, np.ndarray]:
    """Per-record label / video_id / frame_index (and method) of a split, cached next to the
    build.

    Needed for frame sampling, class balancing and method filtering; one sequential scan (no
    image decoding) when the build wrote no index, or an older one without ``method`` and the
    caller filters by method.
    """
    cache = Path(builder.data_dir) / f"aird_index_{split}.npz"
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            out = {k: z[k] for k in z.files}
        if "method" in out or not need_method:
            return out
    out = _scan(builder, split)
    try:
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, cache)
    except OSError:  # read-only build directory: fine, just slower next time
        pass
    return out


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------
def parse_methods(value: str | None) -> tuple[str, ...]:
    """``data.methods`` ("Deepfakes,FaceSwap"; "" = all) -> sorted unique names."""
    if not value:
        return ()
    if not isinstance(value, str):
        value = ",".join(map(str, value))
    return tuple(sorted({m.strip() for m in value.split(",") if m.strip()}))


def dataset_methods(builder: AirdBuilder) -> list[str]:
    """Fake methods present in any split of the build (from the per-split indexes)."""
    found: set[str] = set()
    for split in builder.info.splits.keys():
        meta = record_index(builder, split, need_method=True)
        found.update(str(m) for m in np.unique(meta["method"][meta["label"] == 1]))
    return sorted(found)


def method_mask(builder: AirdBuilder, meta: dict, methods: tuple[str, ...]) -> np.ndarray:
    """Records to keep: every real one, and fakes whose ``method`` is listed."""
    known = dataset_methods(builder)
    unknown = [m for m in methods if m not in known and m != "real"]
    if unknown:
        raise ValueError(
            f"data.methods names unknown method(s) {unknown}; dataset {builder.name!r} has the "
            f"fake methods {known} (comma-separated, '' = all; reals are always kept)."
        )
    return (meta["label"] == 0) | np.isin(meta["method"], list(methods))


def _sample_frames(meta: dict, frames_per_video: int) -> np.ndarray:
    """Positions (sorted) of ``frames_per_video`` evenly spaced frames of every video."""
    order = np.lexsort((meta["frame_index"], meta["video_id"]))
    vids = meta["video_id"][order]
    bounds = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1], True])
    keep = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        keep.extend(order[a + i] for i in sample_frame_indices(b - a, int(frames_per_video)))
    return np.sort(np.asarray(keep, np.int64))


def select(
    builder: AirdBuilder,
    split: str,
    frames_per_video: int | None,
    max_examples: int,
    methods: str | None = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Record indices (sorted) and their labels after the method filter, frame sampling and
    the cap (in that order: the cap counts only kept records)."""
    keep_methods = parse_methods(methods)
    meta = record_index(builder, split, need_method=bool(keep_methods))
    idx = np.arange(len(meta["label"]))
    if keep_methods:
        mask = method_mask(builder, meta, keep_methods)
        idx = np.flatnonzero(mask)
        meta = {k: v[mask] for k, v in meta.items()}
    if builder.IS_VIDEO and frames_per_video:
        pos = _sample_frames(meta, frames_per_video)  # positions into the (filtered) meta
    else:
        pos = np.arange(len(idx))
    if max_examples and len(pos) > max_examples:
        # A fixed (seed-independent) subset: the same examples for every run and host.
        pos = np.sort(np.random.default_rng(0).permutation(pos)[:max_examples])
    return idx[pos], meta["label"][pos].astype(np.int32)


def _methods(data_cfg) -> str:
    # `methods` is newer than some saved runs: .get keeps their config.json loadable.
    return data_cfg.get("methods", "")


def select_train(builder: AirdBuilder, data_cfg) -> tuple[np.ndarray, np.ndarray]:
    """The training selection of ``data.train_split`` (method filter, frame sampling, cap)."""
    return select(
        builder,
        data_cfg.train_split,
        data_cfg.frames_per_video,
        data_cfg.max_examples,
        _methods(data_cfg),
    )


def select_eval(
    builder: AirdBuilder, data_cfg, split: str, frames_per_video: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """An evaluation selection of ``split`` (method filter, ``frames_per_video``, cap)."""
    return select(builder, split, frames_per_video, data_cfg.max_examples, _methods(data_cfg))
