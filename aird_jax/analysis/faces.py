"""Test faces of a run, with each face's method, through the one evaluation data path; and the
model's outputs and gradient analyses on them (``model.apply`` with the run's variables, in
fixed-size batches)."""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aird_jax import inference
from aird_jax.analysis import gradcam, saliency
from aird_jax.analysis.gradients import fake_logit_pass
from aird_jax.cli import UserError
from aird_jax.data import index, pipeline
from aird_jax.evaluate import eval_data_config


@dataclasses.dataclass
class Faces:
    """Model inputs (raw RGB in [0, 1]) with label (1 = fake), method ('real' for reals)."""

    images: np.ndarray  # [N, S, S, 3] float32
    labels: np.ndarray  # [N] int
    methods: np.ndarray  # [N] str
    video_ids: np.ndarray  # [N] str
    splits: list[str]


def test_splits(builder, split: str | None) -> list[str]:
    """``split`` (comma-separated), or the build's ``test`` split, or every ``test*`` split
    (the embedded data has ``test_indomain`` and ``test_heldout``)."""
    names = list(builder.info.splits.keys())
    if split:
        picked = [s.strip() for s in split.split(",") if s.strip()]
    else:
        picked = ["test"] if "test" in names else [s for s in names if s.startswith("test")]
    unknown = [s for s in picked if s not in names]
    if unknown or not picked:
        raise UserError(f"--split {split!r}: dataset {builder.name!r} has the splits {names}")
    return picked


def load_faces(run, split: str | None, max_faces: int, batch_size: int) -> Faces:
    """At most ``max_faces`` test faces (spread evenly over the splits; a fixed subset per split,
    as ``data.max_examples`` picks it) with the method of each from the record index."""
    data_cfg = eval_data_config(run.config)
    builder = index.prepared_builder(data_cfg)
    splits = test_splits(builder, split)
    per = max(1, max_faces // len(splits))
    with data_cfg.unlocked():
        data_cfg.max_examples = per
    parts: dict[str, list[np.ndarray]] = {"image": [], "label": [], "video_id": [], "method": []}
    for sp in splits:
        idx, _ = index.select_eval(builder, data_cfg, sp, None)
        meta = index.record_index(builder, sp, need_method=True)
        loader = pipeline.eval_loader(data_cfg, sp, batch_size=batch_size)
        got = {k: [] for k in ("image", "label", "video_id")}
        for b in loader:
            m = np.asarray(b["mask"], bool)
            for k in got:
                got[k].append(np.asarray(b[k])[m])
        vids = np.concatenate(got["video_id"]).astype(str)
        # The loader yields select_eval's records in order; the methods are attached by position.
        if not np.array_equal(vids, meta["video_id"][idx].astype(str)):
            raise RuntimeError(f"split {sp}: loader and record index disagree on the order")
        for k in got:
            parts[k].append(np.concatenate(got[k]))
        parts["method"].append(meta["method"][idx].astype(str))
    labels = np.concatenate(parts["label"]).astype(np.int64)
    methods = np.where(labels == 0, "real", np.concatenate(parts["method"]))
    return Faces(
        np.concatenate(parts["image"]).astype(np.float32),
        labels,
        methods.astype(str),
        np.concatenate(parts["video_id"]).astype(str),
        splits,
    )


def fake_log_odds(outputs: dict[str, jax.Array]) -> jax.Array:
    """The fake logit: log P(fake) / P(real) = logits[1] - logits[0] (two-class softmax)."""
    logits = outputs["logits"].astype(jnp.float32)
    return logits[:, 1] - logits[:, 0]


def batched(fn: Callable[[np.ndarray], dict], images: np.ndarray, batch_size: int) -> dict:
    """Apply ``fn`` (one fixed batch shape, so one compile) over ``images``; drop the padding."""
    out: dict[str, list[np.ndarray]] = {}
    for b in inference.image_batches(images, batch_size):
        res = fn(b["image"])
        for k, v in res.items():
            out.setdefault(k, []).append(np.asarray(v)[b["mask"]])
    return {k: np.concatenate(v) for k, v in out.items()}


@partial(jax.jit, static_argnums=(0, 3))
def _batch_pass(model: Any, variables: dict, x: jax.Array, gradients: bool) -> dict:
    """Forward outputs and (``gradients``) both gradient analyses from one backward pass, one
    compiled program per model (static: two runs of one architecture share it)."""
    apply = partial(model.apply, train=False)
    grads = fake_logit_pass(apply, variables, x, fake_log_odds) if gradients else {}
    out = grads["outputs"] if gradients else apply(variables, x)
    res = {
        "embedding": out["embedding"],
        "p_fake": jax.nn.softmax(out["logits"].astype(jnp.float32), axis=-1)[:, 1],
        "log_odds": fake_log_odds(out),
    }
    if gradients:
        res["dct_saliency"] = saliency.per_frequency(grads["coefficient_grad"])
        if "feature_map" in grads:  # the RGB stream's hooks (absent in freq_only)
            res["gradcam"] = gradcam.grad_cam(grads["feature_map"], grads["feature_grad"])
    return res


def model_outputs(run, images: np.ndarray, batch_size: int, gradients: bool) -> dict:
    """Per face: ``embedding`` (projection head), ``p_fake``, ``log_odds`` (the fake logit) and,
    with ``gradients``, ``dct_saliency`` [8, 8] and ``gradcam`` [h, w] (unless freq_only)."""
    return batched(
        lambda x: _batch_pass(run.model, run.variables, x, gradients), images, batch_size
    )


_T0 = time.perf_counter()


def say(msg: str) -> None:
    """A progress line with the seconds since start (stderr: stdout keeps only the results)."""
    print(f"[analyze {time.perf_counter() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)
