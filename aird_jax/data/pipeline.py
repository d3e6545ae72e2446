"""grain input pipelines over the project's TFDS builders (contract: num_examples, train_loader,
eval_loader).

Train: a deterministic per-epoch permutation from ``seed`` (class-balanced by oversampling the
minority classes when ``data_cfg.balance``), strided across hosts, ``frames_per_video`` evenly
spaced frames per video for video datasets, the paper's augmentations with every draw seeded
from (seed, epoch, global position) -- so batches do not depend on ``workers`` -- and an
iterator whose state is a JSON-able dict (grain's state) for checkpoints.

``data_cfg.methods`` ("A,B"; "" = all) keeps the real records and the fakes of the listed
methods, in every split (train, num_examples, eval), from the per-split index: no image is read.

Eval: one pass, no augmentation, all frames (or ``frames_per_video``), ``video_id`` carried for
video-level metrics, the last batch padded with ``mask=False``; every host yields the same
number of batches (fully masked ones if needed) so collective evaluation never deadlocks.
Streams from array_record: memory is bounded by the batch, not the split.

Images leave as float32 RAW RGB in [0, 1] at ``image_size``: the model normalises with the
ImageNet statistics for its RGB stream and feeds raw pixels to its frequency stream.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grain.python as grain
import numpy as np
import tensorflow_datasets as tfds

from aird_jax.data import augment, preprocess
from aird_jax.data.builders import AirdBuilder, default_root, get_builder_class

_MAX_EPOCHS = 1_000_000  # "forever": the sampler is lazy, so this costs nothing


# --------------------------------------------------------------------------------------------
# Builders and record metadata
# --------------------------------------------------------------------------------------------
def _cfg(data_cfg, key: str, default: Any) -> Any:
    try:
        value = data_cfg[key] if isinstance(data_cfg, dict) else getattr(data_cfg, key)
    except (KeyError, AttributeError):
        return default
    return default if value is None else value


def data_root(data_cfg) -> Path:
    root = _cfg(data_cfg, "root", "")
    return Path(root).expanduser() if root else default_root()


def get_builder(data_cfg) -> AirdBuilder:
    """Construct the configured builder with the contract's default paths under ``root``."""
    name = _cfg(data_cfg, "name", "synthetic_upsampling")
    cls = get_builder_class(name)
    root = data_root(data_cfg)
    manual = _cfg(data_cfg, "manual_dir", "") or root / "manual" / name
    faces = _cfg(data_cfg, "faces_dir", "") or root / "faces" / name
    return cls(
        config=_cfg(data_cfg, "config", "") or None,
        data_dir=root / "tfds",
        manual_dir=manual,
        faces_dir=faces,
    )


def ensure_built(builder: AirdBuilder) -> AirdBuilder:
    """Build on first use (raises DatasetMissingError with instructions if data is missing).

    A file lock makes concurrent first uses (several processes on one host) build once."""
    if builder.is_prepared():
        return builder
    import fcntl

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


def _check_split(builder: AirdBuilder, split: str) -> None:
    splits = list(builder.info.splits.keys())
    if split not in splits:
        raise ValueError(f"Dataset {builder.name!r} has no split {split!r}; it has {splits}.")


def _make_loader(source, operations, workers: int) -> grain.DataLoader:
    if workers > 0:
        # grain's worker processes read absl flags; outside an absl app they are unparsed.
        from absl import flags

        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
    return grain.DataLoader(
        data_source=source,
        sampler=grain.IndexSampler(
            num_records=len(source), shard_options=grain.NoSharding(), shuffle=False, num_epochs=1
        ),
        operations=operations,
        worker_count=workers,
    )


def _source(builder: AirdBuilder, split: str):
    _check_split(builder, split)
    return builder.as_data_source(split, decoders={"image": tfds.decode.SkipDecoding()})


def _read_many(source, keys: list[int]) -> list:
    """Batched random reads (array_record reads them in parallel) when the source can."""
    if not keys:
        return []
    if hasattr(source, "__getitems__"):
        return list(source.__getitems__(keys))
    return [source[k] for k in keys]


def _str(x) -> str:
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


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
    src = _source(builder, split)
    n = len(src)
    labels = np.zeros(n, np.int8)
    frames = np.zeros(n, np.int32)
    vids: list[str] = []
    methods: list[str] = []
    chunk = 512
    for start in range(0, n, chunk):
        keys = list(range(start, min(n, start + chunk)))
        for k, r in zip(keys, _read_many(src, keys)):
            labels[k] = int(r["label"])
            frames[k] = int(r["frame_index"])
            vids.append(_str(r["video_id"]))
            methods.append(_str(r["method"]))
    out = {
        "label": labels,
        "video_id": np.asarray(vids, dtype=str),
        "frame_index": frames,
        "method": np.asarray(methods, dtype=str),
    }
    try:
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, cache)
    except OSError:  # read-only build directory: fine, just slower next time
        pass
    return out


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


def _method_mask(builder: AirdBuilder, split: str, meta: dict, methods: tuple[str, ...]):
    """Records to keep: every real one, and fakes whose ``method`` is listed."""
    known = dataset_methods(builder)
    unknown = [m for m in methods if m not in known and m != "real"]
    if unknown:
        raise ValueError(
            f"data.methods names unknown method(s) {unknown}; dataset {builder.name!r} has the "
            f"fake methods {known} (comma-separated, '' = all; reals are always kept)."
        )
    return (meta["label"] == 0) | np.isin(meta["method"], list(methods))


def _select(
    builder: AirdBuilder,
    split: str,
    frames_per_video: int | None,
    max_examples: int,
    methods: str | None = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Record indices (sorted) and their labels after the method filter, frame sampling and
    the cap (in that order: the cap counts only kept records)."""
    need_index = builder.IS_VIDEO and frames_per_video
    keep_methods = parse_methods(methods)
    meta = record_index(builder, split, need_method=bool(keep_methods))
    idx = np.arange(len(meta["label"]))
    if keep_methods:
        mask = _method_mask(builder, split, meta, keep_methods)
        idx = np.flatnonzero(mask)
        meta = {k: v[mask] for k, v in meta.items()}
    if need_index:
        from aird_jax.data.video import sample_frame_indices

        order = np.lexsort((meta["frame_index"], meta["video_id"]))
        vids = meta["video_id"][order]
        bounds = np.flatnonzero(np.r_[True, vids[1:] != vids[:-1], True])
        keep = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            keep.extend(order[a + i] for i in sample_frame_indices(b - a, int(frames_per_video)))
        pos = np.sort(np.asarray(keep, np.int64))  # positions into the (filtered) meta
    else:
        pos = np.arange(len(idx))
    if max_examples and len(pos) > max_examples:
        # A fixed (seed-independent) subset: the same examples for every run and host.
        pos = np.sort(np.random.default_rng(0).permutation(pos)[:max_examples])
    return idx[pos], meta["label"][pos].astype(np.int32)


@functools.lru_cache(maxsize=16)
def _prepared(data_cfg_key: str) -> AirdBuilder:
    cfg = json.loads(data_cfg_key)
    ensure_built(get_builder(cfg))
    # A fresh instance reads the DatasetInfo from disk, also when another process built it.
    return get_builder(cfg)


def _builder_for(data_cfg) -> AirdBuilder:
    keys = ("name", "config", "root", "manual_dir", "faces_dir")
    return _prepared(json.dumps({k: str(_cfg(data_cfg, k, "")) for k in keys}, sort_keys=True))


def _epoch_order(labels: np.ndarray, seed: int, epoch: int, balance: bool) -> np.ndarray:
    """Positions (into the selected list) for one epoch; deterministic from (seed, epoch)."""
    rng = np.random.default_rng([seed, epoch, 7])
    if not balance:
        return rng.permutation(len(labels))
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    target = max(len(c) for c in classes)
    parts = []
    for c in classes:
        reps = -(-target // len(c))  # whole permutations, then cut: each item within 1 of equal
        parts.append(np.concatenate([rng.permutation(c) for _ in range(reps)])[:target])
    return rng.permutation(np.concatenate(parts))


def _select_train(builder, data_cfg, split: str):
    """Training selection (frame sampling, cap, method filter) as the config asks for it."""
    return _select(
        builder,
        split,
        _cfg(data_cfg, "frames_per_video", 10),
        _cfg(data_cfg, "max_examples", 0),
        _cfg(data_cfg, "methods", ""),
    )


def num_examples(data_cfg, split: str) -> int:
    """Examples per epoch for ``data_cfg.train_split`` (global, before host sharding, after
    frame sampling and balancing); for any other split, what ``eval_loader`` yields with
    ``frames_per_video=None`` (all frames)."""
    builder = _builder_for(data_cfg)
    if split == _cfg(data_cfg, "train_split", "train"):
        _, labels = _select_train(builder, data_cfg, split)
        if _cfg(data_cfg, "balance", False) and len(labels):
            return int(np.unique(labels, return_counts=True)[1].max() * len(np.unique(labels)))
        return len(labels)
    idx, _ = _select(
        builder, split, None, _cfg(data_cfg, "max_examples", 0), _cfg(data_cfg, "methods", "")
    )
    return len(idx)


# --------------------------------------------------------------------------------------------
# Train
# --------------------------------------------------------------------------------------------
class _TrainSource(grain.RandomAccessDataSource):
    """Item q = the q-th per-host batch: positions (epoch, global position) -> records.

    A grain item is a whole batch so that worker processes (each of which batches its own
    items in grain) can never change batch composition: batches are identical for any
    ``workers``. Hosts take strided positions of the same global permutation.
    """

    def __init__(self, source, indices, labels, seed, balance, shard_index, shard_count, bs):
        self._source = source
        self._indices = indices
        self._labels = labels
        self._seed = int(seed)
        self._balance = bool(balance)
        self._shard_index = int(shard_index)
        self._shard_count = int(shard_count)
        self.batch_size = int(bs)
        self.epoch_len = len(_epoch_order(labels, 0, 0, balance))
        self.per_shard = self.epoch_len // self._shard_count  # equal on every host
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.per_shard * _MAX_EPOCHS // self.batch_size

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = _epoch_order(self._labels, self._seed, epoch, self._balance)
        return self._cache[epoch]

    def __getitem__(self, q: int) -> list[dict]:
        keys, recs = [], []
        for p in range(int(q) * self.batch_size, (int(q) + 1) * self.batch_size):
            # The stream is continuous: a batch may straddle two epochs.
            epoch, j = divmod(p, self.per_shard)
            g = j * self._shard_count + self._shard_index
            keys.append((self._seed, epoch, g))
            recs.append(int(self._indices[self._order(epoch)[g]]))
        return [
            {"image": r["image"], "label": int(r["label"]), "key": k}
            for k, r in zip(keys, _read_many(self._source, recs))
        ]

    def __repr__(self) -> str:  # grain logs this; keep it short
        return f"_TrainSource(n={len(self._indices)}, seed={self._seed}, balance={self._balance})"


class _TrainTransform(grain.MapTransform):
    def __init__(self, image_size: int, do_augment: bool):
        self.image_size = int(image_size)
        self.do_augment = bool(do_augment)

    def _one(self, ex: dict) -> np.ndarray:
        rgb = preprocess.resize(preprocess.decode_image(ex["image"]), self.image_size)
        if not self.do_augment:
            return preprocess.to_float(rgb)
        # Per-example stream from (seed, epoch, global position): reproducible for any host
        # count, worker count or resume point.
        return augment.apply(rgb, augment.draw(np.random.default_rng(list(ex["key"]))))

    def map(self, exs: list[dict]) -> dict:
        return {
            "image": np.stack([self._one(ex) for ex in exs]),
            "label": np.asarray([ex["label"] for ex in exs], np.int32),
        }


class StatefulIterator(grain.DatasetIterator):
    """Wraps grain's DataLoader iterator; ``get_state()`` is a JSON-able dict.

    A ``grain.DatasetIterator`` so that ``grain.checkpoint.CheckpointSave/Restore`` (Orbax)
    store the state as JSON.
    """

    def __init__(self, it):
        super().__init__()
        self._it = it

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        return next(self._it)

    def start_prefetch(self) -> None:
        if hasattr(self._it, "start_prefetch"):
            self._it.start_prefetch()

    def get_state(self) -> dict:
        return json.loads(self._it.get_state().decode("utf-8"))

    def set_state(self, state: dict | str | bytes) -> None:
        if isinstance(state, dict):
            state = json.dumps(state)
        if isinstance(state, str):
            state = state.encode("utf-8")
        self._it.set_state(state)


class TrainLoader:
    """Iterable; each ``iter()`` starts at step 0 (restore the position with ``set_state``)."""

    def __init__(self, loader: grain.DataLoader, steps_per_epoch: int, num_examples: int):
        self._loader = loader
        self.steps_per_epoch = steps_per_epoch
        self.num_examples = num_examples

    def __iter__(self) -> StatefulIterator:
        return StatefulIterator(iter(self._loader))


def train_loader(
    data_cfg, *, seed: int, batch_size: int, shard_index: int = 0, shard_count: int = 1
) -> TrainLoader:
    """Infinite training batches ``{"image": f32 [b,S,S,3] in [0,1], "label": i32 [b]}``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count}).")
    builder = _builder_for(data_cfg)
    split = _cfg(data_cfg, "train_split", "train")
    idx, labels = _select_train(builder, data_cfg, split)
    if len(idx) == 0:
        raise ValueError(f"Split {split!r} of {builder.name!r} is empty.")
    src = _TrainSource(
        _source(builder, split),
        idx,
        labels,
        seed,
        _cfg(data_cfg, "balance", False),
        shard_index,
        shard_count,
        batch_size,
    )
    if src.per_shard < batch_size:
        raise ValueError(
            f"Only {src.per_shard} training examples per host ({src.epoch_len} over "
            f"{shard_count} hosts) for a per-host batch of {batch_size}; lower the batch size "
            "or raise data.max_examples."
        )
    loader = _make_loader(
        src,
        [_TrainTransform(_cfg(data_cfg, "image_size", 224), _cfg(data_cfg, "augment", True))],
        int(_cfg(data_cfg, "workers", 0)),
    )
    return TrainLoader(loader, src.per_shard // batch_size, src.epoch_len)


# --------------------------------------------------------------------------------------------
# Eval
# --------------------------------------------------------------------------------------------
class _EvalSource(grain.RandomAccessDataSource):
    """Item q = the q-th batch of this host's contiguous block (possibly short or empty)."""

    def __init__(self, source, indices, batch_size: int, num_batches: int):
        self._source = source
        self._indices = indices
        self._bs = int(batch_size)
        self._n = int(num_batches)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, q: int) -> list[dict]:
        idx = [int(i) for i in self._indices[int(q) * self._bs : (int(q) + 1) * self._bs]]
        return [
            {"image": r["image"], "label": int(r["label"]), "video_id": _str(r["video_id"])}
            for r in _read_many(self._source, idx)
        ]

    def __repr__(self) -> str:
        return f"_EvalSource(n={len(self._indices)}, batches={self._n})"


class _EvalTransform(grain.MapTransform):
    def __init__(self, image_size: int, degradation: str | None, batch_size: int):
        self.image_size = int(image_size)
        self.degradation = degradation
        self.batch_size = int(batch_size)

    def _one(self, data: bytes) -> np.ndarray:
        rgb = preprocess.resize(preprocess.decode_image(data), self.image_size)
        if self.degradation and self.degradation != "none":
            from aird_jax.data.degrade import degrade

            # Degraded at model resolution: blur sigma is in the model's pixels and JPEG blocks
            # align with the frequency stream's 8x8 DCT blocks.
            rgb = degrade(rgb, self.degradation)
        return preprocess.to_float(rgb)

    def map(self, exs: list[dict]) -> dict:
        bs, s, n = self.batch_size, self.image_size, len(exs)
        image = np.zeros((bs, s, s, 3), np.float32)
        for i, ex in enumerate(exs):
            image[i] = self._one(ex["image"])
        label = np.zeros((bs,), np.int32)
        label[:n] = [ex["label"] for ex in exs]
        return {
            "image": image,
            "label": label,
            "video_id": np.asarray([ex["video_id"] for ex in exs] + [""] * (bs - n), dtype=str),
            "mask": np.arange(bs) < n,
        }


class EvalLoader:
    """One pass per ``iter()``; batches ``{"image", "label", "video_id", "mask"}``."""

    def __init__(self, source, indices, *, batch_size, image_size, degradation, workers,
                 num_batches):  # fmt: skip
        self._source = source
        self._indices = indices
        self.batch_size = batch_size
        self._image_size = image_size
        self._degradation = degradation
        self._workers = workers
        self.num_batches = num_batches
        self.num_examples = len(indices)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[dict]:
        if not self.num_batches:
            return iter(())
        loader = _make_loader(
            _EvalSource(self._source, self._indices, self.batch_size, self.num_batches),
            [_EvalTransform(self._image_size, self._degradation, self.batch_size)],
            self._workers,
        )
        return iter(loader)


def eval_loader(
    data_cfg,
    split: str,
    *,
    batch_size: int,
    degradation: str | None = None,
    frames_per_video: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
) -> EvalLoader:
    """One pass over ``split`` (all frames unless ``frames_per_video``), contiguous host shards.

    Every host gets the same number of batches (padding with fully masked ones)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count}).")
    if degradation not in (None, "none"):
        from aird_jax.data.degrade import DEGRADATIONS

        if degradation not in DEGRADATIONS:
            raise ValueError(
                f"Unknown degradation {degradation!r}; choose from {list(DEGRADATIONS)}."
            )
    builder = _builder_for(data_cfg)
    _check_split(builder, split)
    idx, _ = _select(
        builder,
        split,
        frames_per_video,
        _cfg(data_cfg, "max_examples", 0),
        _cfg(data_cfg, "methods", ""),
    )
    per = math.ceil(len(idx) / shard_count) if len(idx) else 0
    mine = idx[shard_index * per : (shard_index + 1) * per]
    return EvalLoader(
        _source(builder, split),
        mine,
        batch_size=batch_size,
        image_size=int(_cfg(data_cfg, "image_size", 224)),
        degradation=degradation,
        workers=int(_cfg(data_cfg, "workers", 0)),
        num_batches=math.ceil(per / batch_size) if per else 0,
    )
