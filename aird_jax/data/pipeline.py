"""grain input pipelines over the project's TFDS builders (contract: num_examples, train_loader,
eval_loader).

Train: a deterministic per-epoch permutation from ``seed`` (class-balanced by oversampling the
minority classes when ``data_cfg.balance``), strided across hosts, ``frames_per_video`` evenly
spaced frames per video for video datasets, the paper's augmentations with every draw seeded
from (seed, epoch, global position) -- so batches do not depend on ``workers`` -- and an
iterator whose state is a JSON-able dict (grain's state) for checkpoints.

``data_cfg.fakes == "sbi"`` (the SBI protocol): only the real training records are read, and each
becomes a self-blended fake with probability 1/2 (:mod:`aird_jax.data.blend`, seeded from the
same key); batches then carry the X-ray target ``"xray"``. Validation and test are unchanged.

Which records are read (builder, per-split index, ``data_cfg.methods`` filter, frame sampling,
cap) is decided in :mod:`aird_jax.data.index`, from the index alone: no image is read for it.

Eval: one pass, no augmentation, all frames (or ``frames_per_video``), ``video_id`` carried for
video-level metrics, the last batch padded with ``mask=False``; every host yields the same
number of batches (fully masked ones if needed) so collective evaluation never deadlocks.
Streams from array_record: memory is bounded by the batch, not the split.

Images leave as float32 RAW RGB in [0, 1] at ``image_size``: the model normalises with the
ImageNet statistics for its RGB stream and feeds raw pixels to its frequency stream. Un-augmented
images (eval, and train with ``augment=False``) go through ``preprocess.prepare``, the path
``predict`` uses; augmented ones through ``preprocess.resize`` then ``augment.apply``.

``data_cfg`` is the ``data`` block of a config made from ``configs/*.py``: values are read as
they are (the config file is the only home of defaults).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import grain.python as grain
import numpy as np
from absl import flags

from aird_jax.data import augment, augment_batch, blend, decoded_cache, index, preprocess
from aird_jax.data.degrade import DEGRADATIONS, degrade

_MAX_EPOCHS = 1_000_000  # "forever": the sampler is lazy, so this costs nothing


# --------------------------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------------------------
def _make_loader(source, operations, workers: int) -> grain.DataLoader:
    if workers > 0:
        # grain's worker processes read absl flags; outside an absl app they are unparsed.
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


def fakes(data_cfg) -> str:
    """A run's ``data.fakes``: "" = the dataset's fakes, "sbi" = self-blended fakes made on the
    fly from the real training faces (runs trained before it existed: "")."""
    return str(data_cfg.get("fakes", ""))


def _select_train(builder, data_cfg) -> tuple[np.ndarray, np.ndarray]:
    """``index.select_train``; with ``data.fakes=sbi`` only its real records (SBI protocol)."""
    idx, labels = index.select_train(builder, data_cfg)
    if fakes(data_cfg) == "sbi":
        real = np.asarray(labels) == 0
        idx, labels = np.asarray(idx)[real], np.asarray(labels)[real]
    return idx, labels


def num_examples(data_cfg, split: str) -> int:
    """Examples per epoch for ``data_cfg.train_split`` (global, before host sharding, after
    frame sampling and balancing); for any other split, what ``eval_loader`` yields with
    ``frames_per_video=None`` (all frames)."""
    builder = index.prepared_builder(data_cfg)
    if split == data_cfg.train_split:
        _, labels = _select_train(builder, data_cfg)
        if data_cfg.balance and len(labels):
            return int(np.unique(labels, return_counts=True)[1].max() * len(np.unique(labels)))
        return len(labels)
    idx, _ = index.select_eval(builder, data_cfg, split, None)
    return len(idx)


def class_counts(data_cfg, split: str) -> dict[int, int]:
    """``{0: n_real, 1: n_fake}`` of ``split``, selected as :func:`num_examples` counts it (before
    balancing): read from the record index, no image decoded. Training refuses a split that
    lacks a class before anything runs."""
    builder = index.prepared_builder(data_cfg)
    if split == data_cfg.train_split:
        _, labels = _select_train(builder, data_cfg)
        if fakes(data_cfg) == "sbi":  # each real face is a self-blended fake with p = 1/2
            return {0: len(labels), 1: len(labels)}
    else:
        _, labels = index.select_eval(builder, data_cfg, split, None)
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {0: 0, 1: 0} | {int(v): int(c) for v, c in zip(values, counts)}


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
            {"image": r["image"], "label": int(r["label"]), "key": k, "where": _where(r, i)}
            for k, i, r in zip(keys, recs, index.read_many(self._source, recs))
        ]

    def __repr__(self) -> str:  # grain logs this; keep it short
        return f"_TrainSource(n={len(self._indices)}, seed={self._seed}, balance={self._balance})"


def _build_name(builder, split: str) -> str:
    return f"split {split!r} of {builder.name!r} in {builder.data_dir}"


def _records(builder, split: str, data_cfg):
    """The split's records: from the build (encoded images), or, with ``data.cache="decoded"``,
    from its decoded-frame cache (same records, images already decoded; same batches)."""
    if decoded_cache.data_cache(data_cfg) != "decoded":
        return index.data_source(builder, split)
    build = _build_name(builder, split)
    return decoded_cache.source(
        builder,
        split,
        int(data_cfg.image_size),
        preprocess.data_crop(data_cfg),
        lambda rec, k: _decode(rec["image"], _where(rec, k), build),
    )


def _where(record: dict, position: int) -> str:
    """A record's identity for error messages (video id, frame, position in the split)."""
    vid = index.to_str(record.get("video_id", ""))
    return f"record {position} ({vid}, frame {int(record.get('frame_index', 0))})"


def _decode(data: bytes, where: str, build: str) -> np.ndarray:
    """Decode one record's image; a failure names the record and the way out."""
    try:
        return preprocess.decode_image(data)
    except preprocess.ImageDecodeError as e:
        raise preprocess.ImageDecodeError(
            f"{e} It is {where} of {build}, a build made before corrupt files were skipped at "
            "build time: delete that build folder and rerun (the rebuild skips such files and "
            "lists them in its aird_build_report.json)."
        ) from None


class _TrainTransform(grain.MapTransform):
    def __init__(
        self,
        image_size: int,
        do_augment: bool,
        build: str = "the build",
        crop: str = "resize",
        fakes: str = "",
        blend_landmarks: str = "",
    ):
        self.image_size = int(image_size)
        self.do_augment = bool(do_augment)
        self.build = build
        self.crop = crop
        self.fakes = fakes
        self.landmarks = blend.parse_landmarks(blend_landmarks)

    def _rgb(self, ex: dict) -> np.ndarray:
        if isinstance(ex["image"], np.ndarray):  # decoded-frame cache: already decoded
            return ex["image"]
        return _decode(ex["image"], ex.get("where", "a record"), self.build)

    def _source(self, ex: dict) -> tuple[np.ndarray, int, np.ndarray | None]:
        """(uint8 face, label, soft blend mask or None) of one example before cropping."""
        rgb, label, mask = self._rgb(ex), ex["label"], None
        if self.fakes == "sbi":
            # SBI: a self-blended fake in place of the real face with p = 1/2 (its own stream
            # from the key); its soft mask then goes through the same crop as the image.
            rgb, mask, label = blend.sbi_example(rgb, ex["key"], self.landmarks)
        return rgb, label, mask

    def _window(self, ex: dict, a: np.ndarray) -> np.ndarray:
        # Per-example streams from (seed, epoch, global position): reproducible for any host
        # count, worker count or resume point. The window has a stream of its own, so the
        # augmentation draws are those of a run without ``native`` crops.
        window_rng = np.random.default_rng([*ex["key"], 1])
        return preprocess.train_window(a, self.image_size, self.crop, window_rng)

    def _train_mask(self, ex: dict, mask: np.ndarray | None, flip: bool) -> np.ndarray | None:
        """The blend mask through the image's window and flip (the only geometric change)."""
        if mask is None:
            return None
        w = self._window(ex, mask)
        return w[:, ::-1] if flip else w

    def map(self, exs: list[dict]) -> dict:
        srcs = [self._source(ex) for ex in exs]
        masks: list[np.ndarray | None]
        if self.do_augment:
            # Bitwise what augment.apply gives per example, with the same per-example draws.
            draws = [augment.draw(np.random.default_rng(list(ex["key"]))) for ex in exs]
            image = augment_batch.apply_batch(
                [self._window(ex, s[0]) for ex, s in zip(exs, srcs)], draws
            )
            masks = [self._train_mask(ex, s[2], d.flip) for ex, s, d in zip(exs, srcs, draws)]
        else:  # what eval and predict feed
            fit = lambda a: preprocess.fit(a, self.image_size, self.crop)  # noqa: E731
            image = np.stack([preprocess.to_float(fit(s[0])) for s in srcs])
            masks = [None if s[2] is None else fit(s[2]) for s in srcs]
        batch = {"image": image, "label": np.asarray([s[1] for s in srcs], np.int32)}
        if self.fakes == "sbi":  # Face X-ray targets: 4 M (1 - M); all-zero for real faces
            batch["xray"] = np.stack([blend.xray(np.clip(m, 0.0, 1.0)) for m in masks])
        return batch


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
    """Infinite training batches ``{"image": f32 [b,S,S,3] in [0,1], "label": i32 [b]}``, plus
    ``"xray": f32 [b,S,S]`` (the blending boundary) with ``data.fakes=sbi``."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count}).")
    builder = index.prepared_builder(data_cfg)
    split = data_cfg.train_split
    idx, labels = _select_train(builder, data_cfg)
    if len(idx) == 0:
        raise ValueError(f"Split {split!r} of {builder.name!r} is empty.")
    src = _TrainSource(
        _records(builder, split, data_cfg),
        idx,
        labels,
        seed,
        data_cfg.balance,
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
        [
            _TrainTransform(
                data_cfg.image_size,
                data_cfg.augment,
                _build_name(builder, split),
                preprocess.data_crop(data_cfg),
                fakes(data_cfg),
                str(data_cfg.get("blend_landmarks", "")),
            )
        ],
        int(data_cfg.workers),
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
            {
                "image": r["image"],
                "label": int(r["label"]),
                "video_id": index.to_str(r["video_id"]),
                "where": _where(r, i),
            }
            for i, r in zip(idx, index.read_many(self._source, idx))
        ]

    def __repr__(self) -> str:
        return f"_EvalSource(n={len(self._indices)}, batches={self._n})"


class _EvalTransform(grain.MapTransform):
    def __init__(
        self,
        image_size: int,
        degradation: str | None,
        batch_size: int,
        build: str = "the build",
        crop: str = "resize",
    ):
        self.image_size = int(image_size)
        self.degradation = degradation
        self.batch_size = int(batch_size)
        self.build = build
        self.crop = crop

    def _one(self, data, where: str = "a record") -> np.ndarray:
        # bytes from the build, or uint8 pixels from the decoded-frame cache
        rgb = data if isinstance(data, np.ndarray) else _decode(data, where, self.build)
        if self.degradation and self.degradation != "none":
            # Degraded at model resolution: blur sigma is in the model's pixels and JPEG blocks
            # align with the frequency stream's 8x8 DCT blocks.
            rgb = degrade(preprocess.fit(rgb, self.image_size, self.crop), self.degradation)
        return preprocess.prepare(rgb, self.image_size, self.crop)  # the path predict uses

    def map(self, exs: list[dict]) -> dict:
        bs, s, n = self.batch_size, self.image_size, len(exs)
        image = np.zeros((bs, s, s, 3), np.float32)
        for i, ex in enumerate(exs):
            image[i] = self._one(ex["image"], ex.get("where", "a record"))
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
                 num_batches, build="the build", crop="resize"):  # fmt: skip
        self._source = source
        self._crop = crop
        self._indices = indices
        self.batch_size = batch_size
        self._image_size = image_size
        self._degradation = degradation
        self._build = build
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
            [
                _EvalTransform(
                    self._image_size, self._degradation, self.batch_size, self._build, self._crop
                )
            ],
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
    if degradation not in (None, "none") and degradation not in DEGRADATIONS:
        raise ValueError(f"Unknown degradation {degradation!r}; choose from {list(DEGRADATIONS)}.")
    builder = index.prepared_builder(data_cfg)
    index.check_split(builder, split)
    idx, _ = index.select_eval(builder, data_cfg, split, frames_per_video)
    per = math.ceil(len(idx) / shard_count) if len(idx) else 0
    mine = idx[shard_index * per : (shard_index + 1) * per]
    return EvalLoader(
        _records(builder, split, data_cfg),
        mine,
        batch_size=batch_size,
        image_size=int(data_cfg.image_size),
        crop=preprocess.data_crop(data_cfg),
        degradation=degradation,
        workers=int(data_cfg.workers),
        num_batches=math.ceil(per / batch_size) if per else 0,
        build=_build_name(builder, split),
    )
