"""THE scoring path: images in the model's input form -> P(fake), shared by validation during
training, ``evaluate`` and ``predict``.

Inputs are what :func:`aird_jax.data.preprocess.prepare` makes (float32 raw RGB in [0, 1] at the
run's image size); :func:`prepare_batch` applies it to decoded crops, so a user's score is computed
on exactly the input the run was validated on. The forward is jitted once per model (a small,
bounded cache) and always sees full batches: the evaluation loaders pad their last batch and mark
the padding with ``mask``, and :func:`image_batches` does the same for an in-memory array.
Only per-frame scores are accumulated, so memory stays flat however large the split.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from aird_jax.data import preprocess
from aird_jax.parallel import AXIS

_CACHE_SIZE = 4  # compiled forwards kept (a process rarely scores more than a few models)
_FORWARDS: collections.OrderedDict[int, tuple[Any, Callable]] = collections.OrderedDict()


class NonFiniteScores(FloatingPointError):
    """The model produced NaN/Inf scores (a diverged or broken checkpoint)."""


def _forward(model: Any, variables: Any, images: jax.Array) -> jax.Array:
    out = model.apply(variables, images, train=False)
    return jax.nn.softmax(out["logits"].astype(jnp.float32), axis=-1)[:, 1]


def jitted_forward(model: Any) -> Callable:
    """``fwd(variables, images) -> P(fake)``, compiled once per model (LRU of a few models)."""
    key = id(model)
    entry = _FORWARDS.get(key)
    if entry is None or entry[0] is not model:  # a new object may reuse a freed id
        entry = (model, jax.jit(partial(_forward, model)))
        _FORWARDS[key] = entry
        while len(_FORWARDS) > _CACHE_SIZE:
            _FORWARDS.popitem(last=False)
    _FORWARDS.move_to_end(key)
    return entry[1]


def prepare_batch(rgbs: Sequence[np.ndarray], image_size: int, crop: str = "resize") -> np.ndarray:
    """Decoded uint8 RGB images of any size -> float32 [N, S, S, 3], the pipeline's transform
    (``crop`` = the run's ``data.crop``)."""
    if not len(rgbs):
        return np.zeros((0, image_size, image_size, 3), np.float32)
    return np.stack([preprocess.prepare(x, image_size, crop) for x in rgbs])


@dataclasses.dataclass
class Scorer:
    """A model and its variables, ready to score full batches (optionally over a device mesh)."""

    model: Any
    variables: Any
    mesh: jax.sharding.Mesh | None = None

    def __post_init__(self) -> None:
        self._fwd = jitted_forward(self.model)
        self._images = None
        if self.mesh is not None:
            self.variables = jax.device_put(self.variables, NamedSharding(self.mesh, P()))
            self._images = NamedSharding(self.mesh, P(AXIS))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {x.shape}")
        if self._images is not None:
            x = jax.device_put(x, self._images)
        return np.asarray(self._fwd(self.variables, x), np.float32)


@dataclasses.dataclass
class ScoreStream:
    """Per-frame outputs accumulated while streaming (images are never kept)."""

    scores: list[np.ndarray] = dataclasses.field(default_factory=list)
    labels: list[np.ndarray] = dataclasses.field(default_factory=list)
    video_ids: list[np.ndarray] = dataclasses.field(default_factory=list)

    def add(self, scores, labels, video_ids, mask) -> int:
        m = np.asarray(mask, dtype=bool).reshape(-1)
        self.scores.append(np.asarray(scores, dtype=np.float32).reshape(-1)[m])
        self.labels.append(np.asarray(labels).astype(np.int8).reshape(-1)[m])
        self.video_ids.append(np.asarray(video_ids).astype(str).reshape(-1)[m])
        return int(m.sum())

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not self.scores:
            return np.zeros(0, np.float32), np.zeros(0, np.int8), np.zeros(0, str)
        return (
            np.concatenate(self.scores),
            np.concatenate(self.labels),
            np.concatenate(self.video_ids),
        )


def score_batches(
    scorer: Scorer,
    batches: Iterable[dict],
    *,
    total: int | None = None,
    progress: bool = False,
    desc: str = "score",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one scoring loop: (scores, labels, video_ids) per real (unmasked) frame.

    Each batch holds ``image`` (a full batch) and optionally ``label``, ``video_id`` and ``mask``
    (False marks padding). Raises :class:`NonFiniteScores` when a real frame scores NaN/Inf.
    """
    stream = ScoreStream()
    bar = tqdm(
        total=total,
        desc=desc,
        unit="img",
        disable=not progress,
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for b in batches:
            s = scorer(b["image"])
            n = len(s)
            mask = np.asarray(b.get("mask", np.ones(n, bool)), bool)
            if not np.all(np.isfinite(s[mask])):
                raise NonFiniteScores(
                    "the model produced NaN/Inf scores; the checkpoint is probably broken "
                    "(a diverged run)"
                )
            labels = b.get("label", np.zeros(n, np.int8))
            vids = b.get("video_id", np.arange(n).astype(str))
            bar.update(stream.add(s, labels, vids, mask))
    finally:
        bar.close()
    return stream.arrays()


def image_batches(images: np.ndarray, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-size batches of an in-memory array; the last is zero-padded and masked."""
    n = len(images)
    for i in range(0, n, batch_size):
        chunk = np.asarray(images[i : i + batch_size], np.float32)
        k = len(chunk)
        if k < batch_size:  # pad: the jitted forward sees one shape only
            chunk = np.concatenate(
                [chunk, np.zeros((batch_size - k, *chunk.shape[1:]), np.float32)]
            )
        yield {"image": chunk, "mask": np.arange(batch_size) < k}


def score_images(scorer: Scorer, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(fake) for model inputs ``images`` [N, S, S, 3] (see :func:`prepare_batch`)."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}")
    bs = min(int(batch_size), max(len(images), 1))
    return score_batches(scorer, image_batches(images, bs))[0]
